import Foundation
import PTrain
import Synchronization
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

final class WorkerTests: XCTestCase {
  func testPlanUsesEveryPhysicalCoreBeforeAnySibling() throws {
    let topology = try Topology()
    XCTAssertGreaterThanOrEqual(topology.physicalCores, 1)
    let cores = topology.physicalCores
    let plan = topology.plan(threads: topology.processingUnits)
    XCTAssertEqual(Set(plan.prefix(cores).map(\.core)).count, cores, "the first \(cores) workers get distinct cores")
    XCTAssertEqual(Set(plan.map(\.cpu)).count, topology.processingUnits, "every PU used once")
    let oversubscribed = topology.plan(threads: topology.processingUnits + 1)
    XCTAssertEqual(oversubscribed.last?.cpu, oversubscribed.first?.cpu, "past the PUs, placements wrap")
  }

  /// Each worker runs where the plan put it, as the OS reports from inside the worker.
  func testWorkersRunOnTheirPlannedCPUs() throws {
    let topology = try Topology()
    try XCTSkipUnless(topology.canBindThreads, "this system cannot bind threads")
    let pool = try WorkerPool(topology: topology, threads: topology.physicalCores)
    XCTAssertTrue(pool.isPinned, "bound to \(pool.boundCPUs), planned \(pool.placements)")
    var observed = [[Int]](repeating: [], count: pool.count)
    observed.withUnsafeMutableBufferPointer { observed in
      nonisolated(unsafe) let observed = observed  // each worker appends to its own element
      pool.run { worker in
        for _ in 0..<100 {
          observed[worker].append(topology.currentCPU() ?? -1)
          var spin = 0
          for i in 0..<10_000 { spin &+= i }
          _ = spin
        }
      }
    }
    for (worker, cpus) in observed.enumerated() {
      XCTAssertEqual(Set(cpus), [pool.placements[worker].cpu], "worker \(worker)")
    }
  }

  /// Binding happens on the pool's own threads only: the caller keeps its CPU set.
  func testPinningDoesNotLeakOntoOtherThreads() throws {
    let topology = try Topology()
    let before = topology.currentThreadBinding()
    let pool = try WorkerPool(topology: topology, threads: 2)
    pool.run { _ in }
    XCTAssertEqual(topology.currentThreadBinding(), before, "the calling thread's binding changed")
    final class Box: @unchecked Sendable { var cpus: [Int] = [] }
    let other = Box()
    let finished = DispatchSemaphore(value: 0)
    Thread {
      other.cpus = topology.currentThreadBinding()
      finished.signal()
    }.start()
    finished.wait()
    XCTAssertEqual(other.cpus, before, "a new thread inherited a binding")
  }

  func testRunReachesEveryWorkerAndBarrierOrdersPhases() throws {
    let pool = try WorkerPool(topology: try Topology(), threads: 3)
    for _ in 0..<50 {
      var first = [Int](repeating: 0, count: 3)
      var second = [Int](repeating: 0, count: 3)
      first.withUnsafeMutableBufferPointer { first in
        second.withUnsafeMutableBufferPointer { second in
          // Each worker writes its own elements; `second`'s reads follow the barrier.
          nonisolated(unsafe) let (first, second) = (first, second)
          pool.run { worker in
            first[worker] = worker + 1
            pool.barrier.wait()
            second[worker] = first.reduce(0, +)  // sees every write made before the barrier
          }
        }
      }
      XCTAssertEqual(second, [6, 6, 6])
    }
  }

  func testZeroThreadsIsAnError() throws {
    XCTAssertThrowsError(try WorkerPool(topology: try Topology(), threads: 0)) { error in
      XCTAssertEqual("\(error)", "threads must be at least 1, got 0")
    }
  }
}
