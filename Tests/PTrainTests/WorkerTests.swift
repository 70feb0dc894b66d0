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

/// The gradient tree's sum is the same bits however the shards are cut into processes ×
/// workers: the pairs inside each worker's block, then (under MPI) those inside each
/// rank's block, then those that span ranks, add the same operands in the same order as
/// one worker adding them all.
final class ReductionTreeTests: XCTestCase {
  /// Shard `shard`'s gradient: `length` random Floats.
  func shardValues(_ shard: Int, length: Int) -> [Float] {
    randomFloats(length, seed: UInt64(shard + 1)).map { $0 * 1e3 + 1e-3 }
  }

  /// Sums `shards` slots of `length` random Floats the way a trainer with `ranks` ×
  /// `workers` blocks does, shards taking turns in slots (`gradientSlotIndices`), each
  /// written just before it is folded, and returns slot 0.
  func treeSum(shards: Int, ranks: Int, workers: Int, length: Int = 37) -> [Float] {
    let blocks = ranks * workers
    let buffers = (0..<shards).map { _ in UnsafeMutablePointer<Float>.allocate(capacity: length) }
    defer { buffers.forEach { $0.deallocate() } }
    let indices = Trainer.gradientSlotIndices(shards: shards, blocks: blocks, localBlocks: 0..<blocks)
    let mapped = indices.map { buffers[$0] }
    let all = [0..<length]
    for block in 0..<blocks {
      let range = evenShare(of: shards, part: block, parts: blocks)
      let used = Set(range.map { indices[$0] })
      XCTAssert(used.allSatisfy(range.contains), "a block's shards stay in its slots")
      // ⌊log₂ n⌋ + 1 for a block that starts a subtree; one that starts inside one also
      // keeps the roots of the subtrees it cannot finish.
      let levels = Int.bitWidth - range.count.leadingZeroBitCount
      XCTAssertLessThanOrEqual(used.count, range.lowerBound == 0 ? levels : 2 * levels)
      for shard in range {
        mapped[shard].update(from: shardValues(shard, length: length), count: length)
        Trainer.foldLocalPairs(after: shard, block: range, shards: shards, slots: mapped, ranges: all)
      }
    }
    let slots = mapped
    if ranks > 1 {
      for rank in 0..<ranks {
        Trainer.reducePairsInsideRank(rank, ranks: ranks, slots, shards: shards, blocks: blocks, range: 0..<length)
      }
    }
    Trainer.reduceCrossWorkerPairs(slots, shards: shards, workers: ranks > 1 ? ranks : blocks, range: 0..<length)
    return Array(UnsafeBufferPointer(start: slots[0], count: length))
  }

  func testEveryCutOfTheShardsGivesTheSameBits() {
    for shards in [1, 2, 3, 5, 8, 13, 32] {
      let reference = treeSum(shards: shards, ranks: 1, workers: 1)
      for (ranks, workers) in [(1, 2), (1, 3), (2, 1), (2, 2), (3, 1), (3, 2), (4, 3), (5, 1)] {
        XCTAssertEqual(
          treeSum(shards: shards, ranks: ranks, workers: workers).map(\.bitPattern), reference.map(\.bitPattern),
          "\(shards) shards on \(ranks) ranks × \(workers) workers")
      }
    }
    // Not a tautology: adding the same slots in another order changes the bits.
    let values: [[Float]] = (0..<8).map { shard in randomFloats(37, seed: UInt64(shard + 1)).map { $0 * 1e3 + 1e-3 } }
    var backwards = [Float](repeating: 0, count: 37)
    for shard in (0..<8).reversed() {
      for i in 0..<37 { backwards[i] += values[shard][i] }
    }
    XCTAssertNotEqual(treeSum(shards: 8, ranks: 1, workers: 1).map(\.bitPattern), backwards.map(\.bitPattern))
  }

  /// Taking turns in slots adds the pairs of the tree over the shards' own values.
  func testTakingTurnsInSlotsGivesTheTreeOfTheShardsValues() {
    for shards in [1, 2, 3, 5, 8, 13, 32] {
      var values = (0..<shards).map { shardValues($0, length: 37) }
      Trainer.forEachTreePair(shards: shards) { left, right, _ in
        for i in 0..<37 { values[left][i] += values[right][i] }
      }
      XCTAssertEqual(
        treeSum(shards: shards, ranks: 1, workers: 1).map(\.bitPattern), values[0].map(\.bitPattern), "\(shards) shards"
      )
    }
    XCTAssertEqual(Trainer.gradientSlotIndices(shards: 8, blocks: 1, localBlocks: 0..<1), [0, 1, 1, 2, 1, 2, 2, 3])
    XCTAssertEqual(
      Trainer.gradientSlotIndices(shards: 8, blocks: 4, localBlocks: 2..<3), [0, 1, 2, 3, 4, 5, 6, 7],
      "two shards per block: a pair's second shard takes the block's second slot")
    XCTAssertEqual(
      Trainer.gradientSlotIndices(shards: 8, blocks: 2, localBlocks: 1..<2), [0, 1, 2, 3, 4, 5, 5, 6],
      "other blocks keep their own slots")
  }
}
