#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Where training time goes, averaged over the workers: seconds per phase.
///
/// `compute` is forward and backward on the shards (including each image's conversion
/// from bytes), `barrier` is time spent waiting for other workers, `sync` is BatchNorm's
/// exchange of batch statistics inside the step (its waits and sums), `reduce` is summing
/// the gradient slots, `optimizer` is the optimizer's update, `communicate` is the exchange between MPI
/// processes (zero in one process), and `data` is the per-epoch shuffle on the
/// calling thread. Timing costs two clock reads per phase per step (tens of nanoseconds).
public struct PhaseProfile: Sendable, Equatable, Codable {
  public var compute = 0.0
  public var barrier = 0.0
  public var reduce = 0.0
  public var optimizer = 0.0
  public var data = 0.0
  public var sync = 0.0
  public var communicate = 0.0

  package init() {}

  /// The sum of all phases.
  public var total: Double { compute + barrier + reduce + optimizer + data + sync + communicate }

  /// The phases with their names, in a fixed order.
  public var phases: [(name: String, seconds: Double)] {
    [
      ("compute", compute), ("sync", sync), ("reduce", reduce), ("optimizer", optimizer),
      ("communicate", communicate), ("data", data), ("barrier", barrier),
    ]
  }
}

/// Monotonic nanoseconds, for phase timing. Cost: one vDSO call (≈ 20 ns).
@inline(__always) func monotonicNanoseconds() -> UInt64 {
  var time = timespec()
  clock_gettime(CLOCK_MONOTONIC, &time)
  return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
}
