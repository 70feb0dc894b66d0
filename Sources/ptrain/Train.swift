import ArgumentParser
import Foundation
import PTrain

/// The datasets `--dataset` names.
enum DatasetName: String, ExpressibleByArgument, CaseIterable {
  case mnist
  case fashionMNIST = "fashion-mnist"
}

struct Train: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "train",
    abstract: "Train the MNIST CNN on pinned data-parallel workers (the default subcommand).",
    discussion: """
      Progress goes to stderr: a progress bar on a terminal, one line per epoch otherwise. \
      The same --seed gives bit-identical parameters whatever --threads is.
      """)

  @Option(help: "Worker threads, each pinned to its own core. (default: physical cores)")
  var threads: Int?

  @Option(help: "Passes over the training data.")
  var epochs: Int = 5

  @Option(help: "Images per optimizer step.")
  var batchSize: Int = 32

  @Option(parsing: .unconditional, help: "Adam's learning rate.")
  var learningRate: Float = 0.001

  @Option(help: "Seeds initialisation and shuffling.")
  var seed: UInt64 = 1

  @Option(help: "mnist (bundled) or fashion-mnist (from Debian's dataset-fashion-mnist).")
  var dataset: DatasetName = .mnist

  @Option(help: ArgumentHelp("Read the four standard IDX files (raw or .gz) from DIR.", valueName: "DIR"))
  var data: String?

  @Option(help: "Train on the first N training images only.")
  var trainLimit: Int?

  @Flag(help: "Print one JSON summary on stdout at the end.")
  var json = false

  @Flag(help: "No progress output.")
  var quiet = false

  @Flag(help: "At the end, print where training time went: compute, reduce, optimizer, data, barrier.")
  var profile = false

  func run() throws {
    try CPUSupport.requireVectorUnits()
    let topology = try Topology()
    let options = TrainingOptions(
      threads: threads ?? topology.physicalCores, epochs: epochs, batchSize: batchSize,
      learningRate: learningRate, seed: seed)
    try options.validate()
    if let trainLimit, trainLimit < 1 {
      throw PTrainError("--train-limit must be at least 1, got \(trainLimit)")
    }
    if options.threads > topology.processingUnits {
      Terminal.warn(
        "\(options.threads) threads on \(topology.processingUnits) CPUs: workers share CPUs and steps will be slower")
    }
    let loaded = try loadDataset()
    var train = loaded.train
    if let trainLimit {
      guard trainLimit <= train.count else {
        throw PTrainError(
          "--train-limit \(trainLimit) is larger than the \(train.count) training images of \(loaded.name)")
      }
      train = train.prefix(trainLimit)
    }
    let trainer = try Trainer(options: options, topology: topology)
    if !trainer.pool.isPinned && topology.canBindThreads {
      Terminal.warn("workers could not all be pinned: \(trainer.pool.boundCPUs)")
    }
    let progress = ProgressReporter(enabled: !quiet, interactive: Terminal.stderrIsTTY)
    let summary = trainer.train(train, evaluatingOn: loaded.test, onEvent: progress.handle)
    let evaluation = summary.finalEvaluation!
    if json {
      try printJSON(
        RunSummary(
          dataset: loaded.name, trainImages: train.count, options: options, summary: summary,
          evaluation: evaluation, parametersSHA256: trainer.parametersSHA256, pinned: trainer.pool.isPinned,
          profile: profile ? trainer.profile : nil))
    } else {
      print(Report.text(evaluation: evaluation, summary: summary, sha256: trainer.parametersSHA256))
      if profile { print(Report.profile(trainer.profile)) }
    }
  }

  private func loadDataset() throws -> Dataset {
    if let data { return try Dataset.load(directory: data, name: (data as NSString).lastPathComponent) }
    switch dataset {
    case .mnist: return try Dataset.bundledMNIST()
    case .fashionMNIST: return try Dataset.fashionMNIST()
    }
  }
}

/// The `--json` summary. Its snake_case field names are part of the CLI's interface.
struct RunSummary: Encodable {
  let dataset: String
  let trainImages: Int
  let threads: Int
  let batchSize: Int
  let epochs: Int
  let learningRate: Float
  let seed: UInt64
  let seconds: Double
  let imagesPerSecond: Double
  let testLoss: Double
  let testAccuracy: Double
  let perClass: [Evaluation.ClassMetrics]
  let confusionMatrix: [[Int]]
  let history: [Epoch]
  let parametersSHA256: String
  let pinned: Bool
  /// Seconds per phase, averaged over workers; present with --profile.
  let profile: PhaseProfile?

  struct Epoch: Encodable {
    let epoch: Int
    let trainLoss: Double
    let trainAccuracy: Double
    let testLoss: Double?
    let testAccuracy: Double?
    let imagesPerSecond: Double
  }

  init(
    dataset: String, trainImages: Int, options: TrainingOptions, summary: TrainingSummary,
    evaluation: Evaluation, parametersSHA256: String, pinned: Bool, profile: PhaseProfile?
  ) {
    self.profile = profile
    self.dataset = dataset
    self.trainImages = trainImages
    threads = options.threads
    batchSize = options.batchSize
    epochs = options.epochs
    learningRate = options.learningRate
    seed = options.seed
    seconds = summary.seconds
    imagesPerSecond = summary.imagesPerSecond
    testLoss = evaluation.loss
    testAccuracy = evaluation.accuracy
    perClass = evaluation.classes
    confusionMatrix = evaluation.confusion
    history = summary.epochs.map {
      Epoch(
        epoch: $0.epoch, trainLoss: $0.trainLoss, trainAccuracy: $0.trainAccuracy,
        testLoss: $0.test?.loss, testAccuracy: $0.test?.accuracy, imagesPerSecond: $0.imagesPerSecond)
    }
    self.parametersSHA256 = parametersSHA256
    self.pinned = pinned
  }
}
