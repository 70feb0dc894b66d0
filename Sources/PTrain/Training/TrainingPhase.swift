/// The phases a worker's step time is charged to, one counter each; `PhaseProfile` reports
/// them: forward and backward (`compute`), waiting at barriers, summing the gradient slots
/// (`reduce`), the optimizer's update, BatchNorm's batch sums (`sync`) and the exchange
/// between MPI processes (`communicate`).
enum TrainingPhase: Int, CaseIterable {
  case compute, barrier, reduce, optimizer, sync, communicate
}

/// One worker's phase counters (a cache line of `UInt64` nanoseconds, indexed by
/// `TrainingPhase`): `charge` adds the time since the last charge to a phase.
/// Cost: one clock read per charge (≈ 20 ns).
struct PhaseClock {
  private let times: UnsafeMutablePointer<UInt64>
  private var mark = monotonicNanoseconds()

  init(times: UnsafeMutablePointer<UInt64>) { self.times = times }

  /// Adds the time since the last charge (or since the clock was made) to `phase`.
  mutating func charge(_ phase: TrainingPhase) {
    let now = monotonicNanoseconds()
    times[phase.rawValue] &+= now &- mark
    mark = now
  }
}
