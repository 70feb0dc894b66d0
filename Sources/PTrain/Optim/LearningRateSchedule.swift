/// How the learning rate changes over a run, evaluated at every optimizer step `t`
/// (from 0) of a run of `T` steps (epochs × steps per epoch), as PyTorch's schedulers
/// compute it when stepped once per batch. With base rate `r`:
///
/// - `constant`: `r`.
/// - `step:E1,E2,…[:γ]`: `r · γ^k`, `k` the milestones `E` with `E ≤ e`, where `e` is the
///   step's epoch counted from 0 (`MultiStepLR(milestones, gamma)` stepped per epoch); the
///   rate changes at the start of epoch `E + 1` as ptrain numbers epochs. γ is 0.1 unless given.
/// - `cosine`: `r · (1 + cos(π t / T)) / 2` (`CosineAnnealingLR(T_max=T, eta_min=0)`).
/// - `onecycle`: `OneCycleLR(max_lr=r, total_steps=T, anneal_strategy='cos',
///   cycle_momentum=False)` with its defaults `pct_start` 0.3, `div_factor` 25,
///   `final_div_factor` 1e4: from `r/25` up to `r` over steps `0…0.3T − 1`, then down to
///   `r/25/1e4` at step `T − 1`, each phase a half cosine `b + (a − b)(1 + cos(π p))/2`
///   from `a` to `b` with `p` the phase's fraction done.
///
/// `warmupSteps` N > 0: step `t < N` uses `r · (t + 1) / N`; from step N on, `cosine` and
/// `onecycle` run over the remaining steps as if they were the whole run (`t − N` of
/// `T − N`), while `step`'s milestones stay at their epochs.
public struct LearningRateSchedule: Sendable, Equatable, CustomStringConvertible {
  public enum Shape: Sendable, Equatable {
    case constant
    /// Multiply by `gamma` once each milestone epoch is reached.
    case step(milestones: [Int], gamma: Double)
    case cosine
    case oneCycle
  }

  public var shape: Shape
  public var warmupSteps: Int

  public init(_ shape: Shape = .constant, warmupSteps: Int = 0) {
    self.shape = shape
    self.warmupSteps = warmupSteps
  }

  public static let constant = LearningRateSchedule()
  /// The most milestones a `step` schedule may have.
  public static let maximumMilestones = 1000
  /// `step:`'s γ unless given.
  public static let defaultGamma = 0.1
  /// OneCycleLR's defaults.
  static let oneCycleRise = 0.3, oneCycleStartDivisor = 25.0, oneCycleEndDivisor = 1e4

  /// Reads `constant`, `step:E1,E2[:GAMMA]`, `cosine` or `onecycle` (the `--lr-schedule`
  /// text); throws a one-line error otherwise.
  public init(parsing text: String, warmupSteps: Int = 0) throws {
    self.warmupSteps = warmupSteps
    let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
    switch (parts[0], parts.count) {
    case ("constant", 1): shape = .constant
    case ("cosine", 1): shape = .cosine
    case ("onecycle", 1): shape = .oneCycle
    case ("step", 2...3):
      let words = parts[1].split(separator: ",", omittingEmptySubsequences: false)
      let epochs = words.compactMap { Int($0) }
      guard epochs.count == words.count, epochs.count <= Self.maximumMilestones,
        epochs.allSatisfy({ (1...TrainingOptions.maximumEpochs).contains($0) }),
        zip(epochs, epochs.dropFirst()).allSatisfy({ $0 < $1 })
      else {
        throw PTrainError(
          "learning-rate schedule '\(text)': step needs increasing epochs from 1, as step:30,60 or step:30,60:0.2")
      }
      var gamma = Self.defaultGamma
      if parts.count == 3 {
        guard let value = Double(parts[2]), value > 0, value <= 1 else {
          throw PTrainError(
            "learning-rate schedule '\(text)': the factor after the epochs must be above 0 and at most 1")
        }
        gamma = value
      }
      shape = .step(milestones: epochs, gamma: gamma)
    default:
      throw PTrainError(
        "unknown learning-rate schedule '\(text)'; use constant, step:E1,E2[:GAMMA], cosine or onecycle")
    }
    guard warmupSteps >= 0 else { throw PTrainError(option: "warmupSteps", "must be at least 0, got \(warmupSteps)") }
  }

  /// Whether the rates depend on the run's length (`cosine` and `onecycle`), so that a
  /// resume to more epochs changes the rates still to come.
  public var dependsOnRunLength: Bool { shape == .cosine || shape == .oneCycle }

  /// The `--lr-schedule` text of the shape (warm-up apart), which `init(parsing:)` reads.
  public var description: String {
    switch shape {
    case .constant: "constant"
    case .cosine: "cosine"
    case .oneCycle: "onecycle"
    case .step(let milestones, let gamma):
      "step:" + milestones.map(String.init).joined(separator: ",") + (gamma == Self.defaultGamma ? "" : ":\(gamma)")
    }
  }

  /// The rate of step `step` (from 0) of a run of `totalSteps` steps of `stepsPerEpoch`
  /// each, for base rate `base`; computed in Double and rounded once, as PyTorch hands
  /// its optimizers a Python float. Cost: O(milestones).
  public func rate(base: Float, step t: Int, totalSteps: Int, stepsPerEpoch: Int) -> Float {
    let r = Double(base)
    if t < warmupSteps { return Float(r * Double(t + 1) / Double(warmupSteps)) }
    let t0 = Double(t - warmupSteps)
    let span = Double(max(totalSteps - warmupSteps, 1))
    switch shape {
    case .constant:
      return base
    case .step(let milestones, let gamma):
      let epoch = t / max(stepsPerEpoch, 1)
      let reached = milestones.count { $0 <= epoch }
      return Float(r * pow(gamma, Double(reached)))
    case .cosine:
      return Float(r * (1 + cos(Double.pi * t0 / span)) / 2)
    case .oneCycle:
      let start = r / Self.oneCycleStartDivisor
      let end = start / Self.oneCycleEndDivisor
      let peakStep = Self.oneCycleRise * span - 1
      func anneal(_ from: Double, _ to: Double, _ fraction: Double) -> Double {
        to + (from - to) / 2 * (cos(Double.pi * fraction) + 1)
      }
      if t0 <= peakStep { return Float(anneal(start, r, peakStep > 0 ? t0 / peakStep : 1)) }
      return Float(anneal(r, end, (t0 - peakStep) / (span - 1 - peakStep)))
    }
  }
}

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif
