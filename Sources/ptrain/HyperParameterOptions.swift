import ArgumentParser
import PTrain

/// Hyper-parameters shared by `train` and `finetune`: the run's length and batch, the
/// optimizer, its learning-rate schedule and the loss's label smoothing. Options left out
/// stay nil so that a resume can tell them from the checkpoint's.
struct HyperParameterOptions: ParsableArguments {
  @Option(
    parsing: .unconditional,
    help:
      "Worker threads, each pinned to its own core. (default: the physical cores the process may use, split among the MPI ranks on a node)"
  )
  var threads: Int?

  @Option(parsing: .unconditional, help: "Passes over the training data. (default: 5)")
  var epochs: Int?

  @Option(parsing: .unconditional, help: "Images per optimizer step. (default: 32)")
  var batchSize: Int?

  @Option(
    parsing: .unconditional,
    help: "The optimizer's base learning rate, which --lr-schedule varies per step. (default: 0.001)")
  var learningRate: Float?

  @Option(parsing: .unconditional, help: "Seeds initialisation and shuffling. (default: 1)")
  var seed: UInt64?

  @Option(
    help: ArgumentHelp(
      "adam (Keras's rule: ptrain's default, as in earlier versions), adamw (torch.optim.AdamW: β 0.9, 0.999, ε 1e-8, weight decay 0.01 unless given) or sgd (torch.optim.SGD). (default: adam)",
      valueName: "NAME"))
  var optimizer: String?

  @Option(parsing: .unconditional, help: "SGD's momentum, as torch.optim.SGD's (no dampening). (default: 0)")
  var momentum: Float?

  @Flag(help: "Nesterov momentum (SGD with --momentum).")
  var nesterov = false

  @Option(
    parsing: .unconditional,
    help:
      "Weight decay λ: added to the gradient as λθ for sgd and adam, decoupled (θ ← θ(1 − lr·λ)) for adamw, as PyTorch does; every trainable parameter decays unless --no-decay-bn-bias. (default: 0; adamw 0.01)"
  )
  var weightDecay: Float?

  @Flag(help: "Exempt biases and BatchNorm's γ and β (the one-dimensional tensors) from weight decay.")
  var noDecayBnBias = false

  @Option(
    help: ArgumentHelp(
      "How the rate changes per step: constant, step:E1,E2[:GAMMA] (× GAMMA, default 0.1, after epochs E1, E2, as MultiStepLR), cosine (CosineAnnealingLR to 0 over the run) or onecycle (OneCycleLR, cosine, no momentum cycling). (default: constant)",
      valueName: "SCHEDULE"))
  var lrSchedule: String?

  @Option(
    parsing: .unconditional,
    help: ArgumentHelp(
      "Step t < N uses rate × (t + 1) / N; cosine and onecycle then run over the remaining steps. (default: 0)",
      valueName: "N"))
  var warmupSteps: Int?

  @Option(
    parsing: .unconditional,
    help: ArgumentHelp(
      "ε of CrossEntropyLoss(label_smoothing=ε) for the training loss; evaluation reports plain cross-entropy. (default: 0)",
      valueName: "E"))
  var labelSmoothing: Float?

  /// The flags a resumed run should repeat: `--threads`, when it was given.
  var resumeFlags: [String] { threads.map { ["--threads", String($0)] } ?? [] }

  /// The optimizer settings the flags ask for; a usage error when they do not fit.
  func optimizerSettings() throws -> OptimizerSettings {
    let algorithm = try optimizer.map { name in
      guard let known = OptimizerSettings.Algorithm(rawValue: name) else {
        throw ValidationError(
          "--optimizer \(name) is not one ptrain has; use \(OptimizerSettings.Algorithm.allCases.map(\.rawValue).joined(separator: ", "))"
        )
      }
      return known
    }
    let settings = OptimizerSettings(
      algorithm ?? .adam, momentum: momentum ?? 0, nesterov: nesterov, weightDecay: weightDecay,
      decaysNormsAndBiases: !noDecayBnBias)
    try usage { try settings.validate() }
    return settings
  }

  /// The learning-rate schedule the flags ask for; a usage error when malformed.
  func schedule() throws -> LearningRateSchedule {
    let schedule = try usage {
      try LearningRateSchedule(parsing: lrSchedule ?? "constant", warmupSteps: warmupSteps ?? 0)
    }
    return schedule
  }

  /// The options with defaults filled in.
  func options(topology: Topology, frozen: Set<Int> = [], augmentation: Augmentation = .none) throws
    -> TrainingOptions
  {
    let options = TrainingOptions(
      threads: try threadCount(threads, topology: topology), epochs: epochs ?? 5, batchSize: batchSize ?? 32,
      learningRate: learningRate ?? 0.001, seed: seed ?? 1, frozen: frozen, augmentation: augmentation,
      optimizer: try optimizerSettings(), schedule: try schedule(), labelSmoothing: labelSmoothing ?? 0)
    try usage { try options.validate() }
    return options
  }

  /// The hyper-parameters a resume keeps, as (flag, given here, saved in `state`): a flag
  /// given with another value than the checkpoint's is refused.
  func conflicts(with state: TrainingState) throws -> [(flag: String, given: String?, saved: String)] {
    let saved = state.options
    return [
      ("--batch-size", batchSize.map { "\($0)" }, "\(saved.batchSize)"),
      ("--learning-rate", learningRate.map { "\($0)" }, "\(saved.learningRate)"),
      ("--seed", seed.map { "\($0)" }, "\(saved.seed)"),
      ("--optimizer", optimizer, saved.optimizer.algorithm.rawValue),
      ("--momentum", momentum.map { "\($0)" }, "\(saved.optimizer.momentum)"),
      ("--nesterov", nesterov ? "true" : nil, "\(saved.optimizer.nesterov)"),
      ("--weight-decay", weightDecay.map { "\($0)" }, "\(saved.optimizer.weightDecay)"),
      ("--no-decay-bn-bias", noDecayBnBias ? "true" : nil, "\(!saved.optimizer.decaysNormsAndBiases)"),
      ("--lr-schedule", try lrSchedule.map { _ in try schedule().description }, saved.schedule.description),
      ("--warmup-steps", warmupSteps.map { "\($0)" }, "\(saved.schedule.warmupSteps)"),
      ("--label-smoothing", labelSmoothing.map { "\($0)" }, "\(saved.labelSmoothing)"),
    ]
  }
}
