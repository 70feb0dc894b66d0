import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A sense-reversing barrier for a fixed number of threads that spins, then yields.
///
/// Workers sit on their own cores, so spinning costs nothing but that core and a
/// round trip costs well under a microsecond per thread. When threads outnumber cores
/// the waiters yield their core after a short spin instead of starving the laggard.
public final class SpinBarrier: Sendable {
  public let parties: Int
  private let arrived = Atomic<Int>(0)
  private let phase = Atomic<Int>(0)
  private let spinsBeforeYield: Int

  public init(parties: Int, spinsBeforeYield: Int = 4096) {
    self.parties = parties
    self.spinsBeforeYield = spinsBeforeYield
  }

  /// Returns once all `parties` threads have called `wait()` for this phase. Memory
  /// written by any party before its call is visible to all after it.
  public func wait() {
    let current = phase.load(ordering: .acquiring)
    if arrived.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue == parties {
      arrived.store(0, ordering: .relaxed)
      phase.store(current &+ 1, ordering: .releasing)
      return
    }
    var spins = 0
    while phase.load(ordering: .acquiring) == current {
      spins += 1
      if spins > spinsBeforeYield { sched_yield() }
    }
  }
}
