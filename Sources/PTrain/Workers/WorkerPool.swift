import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// N dedicated worker threads, each pinned to its planned CPU before it runs any work.
///
/// `run` hands one closure to every worker and returns when all have finished. The
/// threads are ours alone: they bind themselves, so no binding ever touches a thread
/// the pool does not own (the caller's thread, Dispatch's pool). Between jobs workers
/// spin briefly, then sleep on a condition variable.
///
/// `@unchecked Sendable` because `boundCPUs` and the thread list change only in `init` and
/// `deinit`, and `run` refuses a call that overlaps another (from a second thread, or from
/// inside a job), so one job at a time reaches the workers.
public final class WorkerPool: @unchecked Sendable {
  /// Where each worker was planned to run.
  public let placements: [Topology.Placement]
  /// For each worker, the CPUs its thread was bound to, read back from the OS after
  /// binding (the whole allowed set where binding is unsupported).
  public private(set) var boundCPUs: [[Int]] = []
  /// Whether every worker is bound to exactly its planned CPU.
  public var isPinned: Bool {
    zip(placements, boundCPUs).allSatisfy { $1 == [$0.cpu] }
  }
  /// A barrier for all workers, for use inside `run`.
  public let barrier: SpinBarrier
  public var count: Int { placements.count }

  private let state: State
  private var threads: [pthread_t] = []

  /// Starts `threads` workers placed by `topology.plan(threads:)` and waits until each
  /// has bound itself. When `localRanks` processes share the node, rank `localRank`
  /// takes its own share of the node's plan, so that no two processes pin to one core.
  /// Cost: one thread start per worker (≈ 50 µs each).
  public init(topology: Topology, threads: Int, localRank: Int = 0, localRanks: Int = 1) throws {
    guard threads > 0 else { throw PTrainError(option: "threads", "must be at least 1, got \(threads)") }
    placements = topology.plan(threads: threads, localRank: localRank, localRanks: localRanks)
    barrier = SpinBarrier(parties: threads)
    state = State(workers: threads, topology: topology, placements: placements)
    for index in 0..<threads {
      let start = Unmanaged.passRetained(WorkerStart(state: state, index: index)).toOpaque()
      var thread = pthread_t()
      let status = pthread_create(
        &thread, nil,
        { raw in
          let start = Unmanaged<WorkerStart>.fromOpaque(raw!).takeRetainedValue()
          start.state.workerLoop(index: start.index)
          return nil
        }, start)
      guard status == 0 else {
        Unmanaged<WorkerStart>.fromOpaque(start).release()
        shutDown()
        throw PTrainError("could not start worker thread \(index): \(String(cString: strerror(status)))")
      }
      self.threads.append(thread)
    }
    var bound = [[Int]](repeating: [], count: threads)
    bound.withUnsafeMutableBufferPointer { slots in
      // Each worker writes only its own element, and `run` returns after the last write.
      nonisolated(unsafe) let slots = slots
      run { worker in slots[worker] = topology.currentThreadBinding() }
    }
    boundCPUs = bound
  }

  deinit { shutDown() }

  /// Runs `body(worker)` once on each worker thread, concurrently, and returns when every
  /// call has returned. `body` never runs on the calling thread, hence `@Sendable`: what
  /// it shares between workers (buffers through pointers) each worker must write apart,
  /// or order with `barrier`. Calling `run` from inside `body`, or from two threads at
  /// once, stops the program with a message instead of deadlocking. Cost: a wake-up of
  /// each worker (sub-microsecond while they spin, a futex wake after they sleep) plus
  /// the slowest call.
  public func run(_ body: @Sendable (Int) -> Void) {
    precondition(
      !state.busy.exchange(true, ordering: .acquiring),
      "WorkerPool.run was called while the pool runs another job (from a job, or from a second thread)")
    defer { state.busy.store(false, ordering: .releasing) }
    withoutActuallyEscaping(body) { job in
      state.job = job
      state.pending.store(count, ordering: .relaxed)
      state.sleep.broadcast { _ = state.generation.wrappingAdd(1, ordering: .releasing) }
      var spins = 0
      while state.pending.load(ordering: .acquiring) != 0 {
        spins += 1
        if spins > 2048 {
          state.done.wait { state.pending.load(ordering: .acquiring) == 0 }
          break
        }
      }
      state.job = nil
    }
  }

  private func shutDown() {
    state.stopping = true
    state.sleep.broadcast { _ = state.generation.wrappingAdd(1, ordering: .releasing) }
    for thread in threads { pthread_join(thread, nil) }
    threads.removeAll()
  }

  private final class WorkerStart {
    let state: State
    let index: Int
    init(state: State, index: Int) {
      self.state = state
      self.index = index
    }
  }

  /// What the workers share with the pool. Kept apart from `WorkerPool` so that running
  /// threads do not keep the pool itself alive.
  ///
  /// `@unchecked Sendable` because `job` and `stopping` are plain fields: the pool writes
  /// them before bumping `generation` (release) and the workers read them after seeing the
  /// bump (acquire); `job` is cleared only after every worker has finished it.
  private final class State: @unchecked Sendable {
    /// Whether a `run` is in progress.
    let busy = Atomic<Bool>(false)
    let generation = Atomic<Int>(0)
    let pending = Atomic<Int>(0)
    let sleep = ConditionLock()
    let done = ConditionLock()
    let topology: Topology
    let placements: [Topology.Placement]
    var job: (@Sendable (Int) -> Void)?
    var stopping = false

    init(workers: Int, topology: Topology, placements: [Topology.Placement]) {
      self.topology = topology
      self.placements = placements
    }

    func workerLoop(index: Int) {
      topology.bindCurrentThread(toCPU: placements[index].cpu)
      var seen = 0
      while true {
        var spins = 0
        while generation.load(ordering: .acquiring) == seen {
          spins += 1
          if spins > 16384 {
            sleep.wait { generation.load(ordering: .acquiring) != seen }
          }
        }
        seen = generation.load(ordering: .acquiring)
        if stopping { return }
        job?(index)
        if pending.wrappingSubtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
          done.broadcast {}
        }
      }
    }
  }
}

/// Part `part` of `parts` contiguous shares of `0..<count`, as even as possible (sizes
/// differ by at most one), empty when there are more parts than items. How work is split
/// across workers.
public func evenShare(of count: Int, part: Int, parts: Int) -> Range<Int> {
  (part * count / parts)..<((part + 1) * count / parts)
}
