/// Hyper-parameters and execution settings of a training run.
public struct TrainingOptions: Sendable, Equatable {
  /// Worker threads, one per physical core by default.
  public var threads: Int
  public var epochs: Int
  public var batchSize: Int
  /// The optimizer's base learning rate (Keras's Adam default 1e-3), which `schedule` varies.
  public var learningRate: Float
  /// The optimizer and its hyper-parameters (Adam by default).
  public var optimizer: OptimizerSettings
  /// How the learning rate changes from step to step (constant by default).
  public var schedule: LearningRateSchedule
  /// ε of `CrossEntropyLoss(label_smoothing=ε)`: the training loss's target is
  /// `(1 − ε)·onehot + ε/classes`. Evaluation reports plain cross-entropy.
  public var labelSmoothing: Float
  /// Seeds initialisation and every epoch's shuffle.
  public var seed: UInt64
  /// Images per shard: the unit of work a worker computes into its own gradient slot.
  /// It is fixed independently of `threads`, which is what makes results identical
  /// across thread counts.
  public var shardSize: Int
  /// The indices of the layers that keep their parameters: they get no gradients and no
  /// updates.
  public var frozen: Set<Int>
  /// Random crops and flips of the training images, drawn per (seed, epoch, image).
  public var augmentation: Augmentation
  /// The fused paths the workers take (`Fusions.all`); none gives the same bits through
  /// every layer's plain operation, which tests compare against.
  package var fusions: Fusions = .all

  public init(
    threads: Int, epochs: Int = 5, batchSize: Int = 32, learningRate: Float = 1e-3,
    seed: UInt64 = 1, shardSize: Int = 4, frozen: Set<Int> = [], augmentation: Augmentation = .none,
    optimizer: OptimizerSettings = .adam, schedule: LearningRateSchedule = .constant, labelSmoothing: Float = 0
  ) {
    self.optimizer = optimizer
    self.schedule = schedule
    self.labelSmoothing = labelSmoothing
    self.frozen = frozen
    self.augmentation = augmentation
    self.threads = threads
    self.epochs = epochs
    self.batchSize = batchSize
    self.learningRate = learningRate
    self.seed = seed
    self.shardSize = shardSize
  }

  /// The most worker threads a run may have. Each costs a thread and a replica of the
  /// model's buffers, and a batch has only so many shards to share out.
  public static let maximumThreads = 1024
  /// The most epochs a run may have.
  public static let maximumEpochs = 1_000_000

  /// Shards of a full batch: the most workers a step can keep busy.
  package var shardsPerBatch: Int { (batchSize + shardSize - 1) / shardSize }

  /// Throws a one-line error for the first setting that cannot work.
  public func validate() throws {
    guard threads >= 1 else { throw PTrainError(option: "threads", "must be at least 1, got \(threads)") }
    guard threads <= Self.maximumThreads else {
      throw PTrainError(option: "threads", "must be at most \(Self.maximumThreads), got \(threads)")
    }
    guard epochs >= 1 else { throw PTrainError(option: "epochs", "must be at least 1, got \(epochs)") }
    guard epochs <= Self.maximumEpochs else {
      throw PTrainError(option: "epochs", "must be at most \(Self.maximumEpochs), got \(epochs)")
    }
    guard batchSize >= 1 else { throw PTrainError(option: "batchSize", "must be at least 1, got \(batchSize)") }
    guard batchSize <= 65536 else { throw PTrainError(option: "batchSize", "must be at most 65536, got \(batchSize)") }
    guard learningRate.isFinite, learningRate > 0 else {
      throw PTrainError(option: "learningRate", "must be a positive finite number, got \(learningRate)")
    }
    guard (1...65536).contains(shardSize) else {
      throw PTrainError("the shard size must be from 1 to 65536, got \(shardSize)")
    }
    try optimizer.validate()
    guard schedule.warmupSteps >= 0 else {
      throw PTrainError(option: "warmupSteps", "must be at least 0, got \(schedule.warmupSteps)")
    }
    guard labelSmoothing.isFinite, (0..<1).contains(labelSmoothing) else {
      throw PTrainError(option: "labelSmoothing", "must be at least 0 and below 1, got \(labelSmoothing)")
    }
  }

  /// The learning rate of optimizer step `step` (from 0) in a run whose epochs have
  /// `stepsPerEpoch` steps each. Cost: O(1) (O(milestones) for a step schedule).
  public func learningRate(atStep step: Int, stepsPerEpoch: Int) -> Float {
    schedule.rate(base: learningRate, step: step, totalSteps: epochs * stepsPerEpoch, stepsPerEpoch: stepsPerEpoch)
  }
}

/// What a training run reports as it goes.
public enum TrainingEvent: Sendable {
  /// A step finished. Sent after every step, from a worker thread.
  case step(StepProgress)
  /// An epoch finished, with its test metrics when test data was given.
  case epochFinished(EpochReport)
}

/// Progress within an epoch.
public struct StepProgress: Sendable {
  public let epoch: Int, epochs: Int
  public let step: Int, stepsPerEpoch: Int
  /// Images trained on so far in this epoch.
  public let images: Int
  /// Mean training loss over this epoch so far.
  public let loss: Double
  /// Training accuracy over this epoch so far.
  public let accuracy: Double
  /// Seconds since the epoch began.
  public let seconds: Double
  /// The learning rate this step used.
  public let learningRate: Float
}

/// One finished epoch.
public struct EpochReport: Sendable, Codable {
  public let epoch: Int
  public let trainLoss: Double
  public let trainAccuracy: Double
  /// Seconds spent training (evaluation excluded).
  public let trainSeconds: Double
  public let imagesPerSecond: Double
  public let test: Evaluation?
  /// The learning rate of the epoch's last step.
  public let learningRate: Float
}

/// The result of `Trainer.train`.
public struct TrainingSummary: Sendable {
  public let epochs: [EpochReport]
  /// Training throughput over the whole run, evaluation excluded.
  public let imagesPerSecond: Double
  /// Wall-clock seconds of the whole run, evaluation included.
  public let seconds: Double
  /// Whether the run ended early because `Trainer.requestStop()` was called.
  public let stopped: Bool
  /// The last epoch's test evaluation, if test data was given.
  public var finalEvaluation: Evaluation? { epochs.last?.test }
}
