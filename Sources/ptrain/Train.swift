import ArgumentParser
import Foundation
import PTrain

struct Train: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "train",
    abstract: "Train a CNN on pinned data-parallel workers (the default subcommand).",
    discussion: """
      Progress goes to stderr: a progress bar on a terminal, one line per epoch otherwise. \
      The same --seed gives bit-identical parameters whatever --threads is. With --resume, \
      training continues from a checkpoint exactly as if it had never stopped; the \
      hyper-parameters and data come from the checkpoint, --epochs is the total to reach, \
      and the checkpoint is saved back to the same file unless --save names another.
      """)

  @OptionGroup var model: ModelOptions
  @OptionGroup var placement: PlacementOptions
  @OptionGroup var hyperParameters: HyperParameterOptions
  @OptionGroup var data: DataOptions
  @OptionGroup var inputs: InputOptions
  @OptionGroup var checkpoints: CheckpointOptions
  @OptionGroup var validation: ValidationOptions
  @OptionGroup var output: OutputOptions

  @Option(
    help: ArgumentHelp(
      "Continue the run saved in PATH; the model, data and settings come from it.", valueName: "PATH"))
  var resume: String?

  func run() throws {
    try CPUSupport.requireVectorUnits()
    var checkpoints = self.checkpoints
    // A resumed run saves back to the file it came from unless told otherwise, so that
    // finishing it never leaves the file at the interrupted state.
    if let resume, checkpoints.save == nil { checkpoints.save = resume }
    if resume == nil { try checkpoints.checkPaths() }
    var output = self.output
    if resume == nil { try output.checkLogging() }
    let topology = try placement.topology()
    let trainer: Trainer
    let dataset: Dataset
    var train: LabeledImages
    var metadata: [String: String]
    var held: LabeledImages?
    var best = BestEpochKeeper(path: validation.saveBest, patience: validation.earlyStop)
    if let resume {
      for (flag, given) in [("--model", model.model), ("--augment", inputs.augment), ("--normalize", inputs.normalize)]
      where given != nil {
        throw ValidationError("\(flag) cannot change a resumed run; it continues with \(resume)'s")
      }
      let threads = try threadCount(hyperParameters.threads, topology: topology)
      let checkpoint = try Checkpoint(path: resume)
      try checkpoints.checkPaths()  // after reading, so that a bad --resume file is what is reported
      if output.logdir == nil { output.logdir = checkpoint.metadata["logdir"] }  // keeps logging where it did
      try output.checkLogging()
      let state = try checkpoint.trainingState()
      _ = try checkpoint.metadata["history"].map { try RunSummary.history(decoding: $0, of: resume) }
      try refuseChanges(to: state, path: resume)
      let epochs = hyperParameters.epochs ?? state.options.epochs
      if epochs != state.options.epochs && state.options.schedule.dependsOnRunLength {
        Terminal.warn(
          "--epochs \(epochs) changes the length the \(state.options.schedule) schedule was planned over (\(state.options.epochs) epochs): the rates still to come follow the new length"
        )
      }
      guard epochs > state.epochsCompleted else {
        throw ValidationError(
          "\(resume) has already finished \(state.epochsCompleted) epoch(s); pass --epochs with a larger total to train on"
        )
      }
      dataset = try data.load(
        defaultsFrom: checkpoint.metadata, of: resume, threads: threads, shape: state.model.input)
      train = try data.resumedTrainingImages(of: dataset, checkpoint: resume, metadata: checkpoint.metadata)
      if let saved = checkpoint.metadata["validation_split"] {
        guard let count = Int(saved), count >= 1, count < train.count else {
          throw PTrainError("\(resume): __metadata__.validation_split is not a number of images below \(train.count)")
        }
        if let given = try validation.split(), try given.count(of: train.count) != count {
          throw ValidationError(
            "--validation-split \(given) differs from \(resume)'s \(count) images; a resume keeps the checkpoint's split"
          )
        }
        (train, held) = train.splitting(validationCount: count, seed: state.options.seed)
        best = try BestEpochKeeper(
          path: validation.saveBest, patience: validation.earlyStop, resumedFrom: checkpoint.metadata,
          epochsCompleted: state.epochsCompleted, file: resume)
      } else if validation.validationSplit != nil {
        throw ValidationError("--validation-split cannot be added to a resumed run; \(resume) trained on every image")
      }
      guard train.fingerprint == state.dataFingerprint else {
        throw PTrainError(
          "\(resume) was trained on \(state.dataFingerprint), but this data is \(train.fingerprint); resume on the same data"
        )
      }
      do { try state.validatePosition(trainingImages: train.count) } catch let error as PTrainError {
        throw PTrainError("\(resume): \(error)")
      }
      trainer = try Trainer(
        resuming: state, threads: threads, epochs: epochs, topology: topology, processes: job,
        trainingImages: train.count)
      metadata = checkpoint.metadata.filter {
        ["source_model", "new_head", "history", "validation_split"].contains($0.key)
      }
    } else {
      let options = try hyperParameters.options(topology: topology, augmentation: try inputs.augmentation())
      dataset = try data.load(threads: options.threads, shape: model.requiredInput)
      let definition = try model.definition(input: dataset.train.shape)
      train = try data.trainingImages(of: dataset)
      metadata = [:]
      if let split = try validation.split() {
        let count = try usage { try split.count(of: train.count) }
        (train, held) = train.splitting(validationCount: count, seed: options.seed)
        metadata["validation_split"] = String(count)
      }
      let normalization = try inputs.normalization(channels: definition.input.channels, dataset: dataset)
      trainer = try Trainer(
        options: options, model: definition, normalization: normalization, topology: topology, processes: job,
        trainingImages: train.count)
    }
    try validation.check(resumedSplit: held != nil)
    if dataset.imageFolder?.hasTestSet == false && held == nil {
      throw ValidationError(
        "\(dataset.directory ?? dataset.name) has no test/ folder: pass --validation-split N (or a fraction) to hold out images to evaluate on"
      )
    }
    if let path = best.path, let save = checkpoints.save, sameFile(path, save) {
      throw ValidationError("--save-best \(path) is also --save; give the best epoch a file of its own")
    }
    // The resumed file may be saved back to, but not reported or best-kept over.
    try refuseOverwriting(
      inputs: dataInputs(dataset) + (resume.map { [NamedPath(role: "--resume", path: $0)] } ?? []),
      outputs: [
        output.report.map { NamedPath(role: "--report", path: $0) },
        best.path.map { NamedPath(role: "--save-best", path: $0) },
      ].compactMap { $0 })
    try refuseOverwriting(
      inputs: dataInputs(dataset),
      outputs: [
        checkpoints.save.map { NamedPath(role: "--save", path: $0) },
        output.report.map { NamedPath(role: "--report", path: $0) },
      ].compactMap { $0 })
    metadata.merge(
      dataset.checkpointMetadata(
        trainImages: train.count + (held?.count ?? 0), classes: trainer.plan.classes)
    ) { _, new in new }
    if let logdir = output.logdir {
      metadata["logdir"] = URL(fileURLWithPath: logdir).standardizedFileURL.path
    }
    warnAboutPlacement(trainer: trainer, topology: topology)
    var session = TrainingSession(
      trainer: trainer, dataset: dataset, train: train, checkpoints: checkpoints, output: output, metadata: metadata,
      activity: resume.map { "resuming \($0)" } ?? "training")
    session.resumeFlags =
      hyperParameters.resumeFlags + checkpoints.resumeFlags + validation.resumeFlags + data.resumeFlags
    session.validation = held
    session.best = best
    try session.run()
  }

  /// A resume keeps the checkpoint's hyper-parameters; asking for different ones is an error.
  private func refuseChanges(to state: TrainingState, path: String) throws {
    for conflict in try hyperParameters.conflicts(with: state)
    where conflict.given != nil && conflict.given != conflict.saved {
      throw ValidationError(
        "\(conflict.flag) \(conflict.given!) differs from \(path)'s \(conflict.saved); a resume keeps the checkpoint's hyper-parameters"
      )
    }
  }
}

/// Warns when workers outnumber CPUs or a batch's shards, or could not be pinned.
func warnAboutPlacement(trainer: Trainer, topology: Topology) {
  let sharing = topology.isRestricted ? 1 : trainer.processes.localSize  // ranks split the node's cores
  let local = trainer.options.threads * sharing
  if local > topology.processingUnits {
    let processes = sharing > 1 ? " (\(sharing) processes on this node)" : ""
    Terminal.warn(
      "\(local) threads\(processes) on \(topology.processingUnits) \(topology.isRestricted ? "allowed " : "")CPUs: workers share CPUs and steps will be slower"
    )
  }
  if let advice = idleWorkerAdvice(threads: trainer.options.threads * trainer.processes.size, options: trainer.options)
  {
    Terminal.warn(advice)
  }
  if !trainer.pool.isPinned && topology.canBindThreads {
    Terminal.warn("workers could not all be pinned: \(trainer.pool.boundCPUs)")
  }
}

/// Why `threads` workers would leave some idle at every step of `options`' batches
/// (a batch is cut into shards of `options.shardSize` images, one worker each at most),
/// and what to do about it; nil when every worker gets a shard.
func idleWorkerAdvice(threads: Int, options: TrainingOptions) -> String? {
  let shards = options.shardsPerBatch
  guard threads > shards else { return nil }
  return
    "\(threads) threads, but a batch of \(options.batchSize) makes only \(shards) shard(s) of \(options.shardSize) images: "
    + "\(threads - shards) worker(s) will idle at every step; use --threads \(shards), or --batch-size \(threads * options.shardSize) or larger"
}

/// The `--json` summary. Its snake_case field names are part of the CLI's interface.
struct RunSummary: Codable {
  let dataset: String
  /// The model text; absent in summaries from before it was added.
  let model: String?
  let classNames: [String]?
  let trainImages: Int
  let threads: Int
  let batchSize: Int
  let epochs: Int
  let learningRate: Float
  /// The optimizer's settings (`sgd momentum=0.9 …`), the schedule (`cosine`), its warm-up
  /// steps and the label smoothing; absent in summaries from before they were added.
  let optimizer: String?
  let lrSchedule: String?
  let warmupSteps: Int?
  let labelSmoothing: Float?
  let seed: UInt64
  let seconds: Double
  let imagesPerSecond: Double
  /// The mean test loss; null in the JSON when it is not finite (outputs overflowed).
  let testLoss: FiniteNumber
  /// How many test images' outputs overflowed (their loss is not finite); absent in
  /// summaries from before it was added.
  let testNonFinite: Int?
  let testAccuracy: Double
  let perClass: [Evaluation.ClassMetrics]
  let confusionMatrix: [[Int]]
  let history: [Epoch]
  let parametersSHA256: String
  let pinned: Bool
  /// The CPUs each worker's thread is bound to, read back from inside it.
  let workerCpus: [[Int]]?
  /// Seconds per phase, averaged over workers; present with --profile.
  let profile: PhaseProfile?
  /// Where the checkpoint went; present with --save.
  let checkpoint: String?
  /// Which images `test_loss`, `test_accuracy`, `per_class` and `confusion_matrix` are
  /// of: `test`, or `validation` for data without a test set; absent in summaries from
  /// before it was added.
  let evaluatedOn: String?
  /// The validation split and its best epoch; present with --validation-split.
  let validation: Validation?

  struct Validation: Codable {
    let images: Int
    let bestEpoch: Int
    let bestAccuracy: Double?
    /// Where --save-best kept the best epoch's checkpoint.
    let bestCheckpoint: String?
    /// The epoch after which --early-stop ended the run; absent when it ran every epoch.
    let earlyStoppedAfterEpoch: Int?
  }

  struct Epoch: Codable {
    let epoch: Int
    let trainLoss: Double
    let trainAccuracy: Double
    let testLoss: Double?
    let testAccuracy: Double?
    /// With a validation split, each epoch's metrics on it (and no test metrics).
    let validationLoss: Double?
    let validationAccuracy: Double?
    let imagesPerSecond: Double
    /// The rate of the epoch's last step; absent in histories from before it was added.
    let learningRate: Float?

    init(_ report: EpochReport, validating: Bool = false) {
      learningRate = report.learningRate
      let loss = report.test.flatMap { $0.loss.isFinite ? $0.loss : nil }  // null when not finite
      validationLoss = validating ? loss : nil
      validationAccuracy = validating ? report.test?.accuracy : nil
      epoch = report.epoch
      trainLoss = report.trainLoss
      trainAccuracy = report.trainAccuracy
      testLoss = validating ? nil : loss
      testAccuracy = validating ? nil : report.test?.accuracy
      imagesPerSecond = report.imagesPerSecond
    }
  }

  init(
    dataset: String, trainImages: Int, options: TrainingOptions, summary: TrainingSummary?,
    evaluation: Evaluation, parametersSHA256: String, pinned: Bool, profile: PhaseProfile?, checkpoint: String?,
    model: String? = nil, classNames: [String]? = nil, history: [Epoch]? = nil, workerCPUs: [[Int]]? = nil,
    evaluatedOn: String = "test", validation: Validation? = nil
  ) {
    self.evaluatedOn = evaluatedOn
    self.validation = validation
    workerCpus = workerCPUs
    self.model = model
    self.classNames = classNames
    self.profile = profile
    self.checkpoint = checkpoint
    self.dataset = dataset
    self.trainImages = trainImages
    threads = options.threads
    batchSize = options.batchSize
    epochs = options.epochs
    learningRate = options.learningRate
    optimizer = options.optimizer.description
    lrSchedule = options.schedule.description
    warmupSteps = options.schedule.warmupSteps
    labelSmoothing = options.labelSmoothing
    seed = options.seed
    seconds = summary?.seconds ?? 0
    imagesPerSecond = summary?.imagesPerSecond ?? 0
    testLoss = FiniteNumber(evaluation.loss)
    testNonFinite = evaluation.nonFiniteLosses
    testAccuracy = evaluation.accuracy
    perClass = evaluation.classes
    confusionMatrix = evaluation.confusion
    self.history = history ?? (summary?.epochs ?? []).map { Epoch($0) }
    self.parametersSHA256 = parametersSHA256
    self.pinned = pinned
  }
}
