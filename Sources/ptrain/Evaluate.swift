import ArgumentParser
import Foundation
import PTrain

/// `ptrain evaluate`: test metrics of a saved model.
struct Evaluate: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "evaluate",
    abstract: "Report test loss, accuracy, per-class metrics and the confusion matrix of a checkpoint.",
    discussion: """
      Reads any .safetensors file with the model's PyTorch tensor names: one ptrain saved, or a \
      state_dict PyTorch saved, which names neither its model nor its normalisation (give them \
      with --model and --normalize). Without --dataset or --data it uses the dataset the checkpoint was trained on; \
      --data reads IDX files, CIFAR-10's binary files or an image folder's test/ split (resized \
      to the model's input).
      """)

  @OptionGroup var placement: PlacementOptions

  @Argument(help: ArgumentHelp("The .safetensors checkpoint to evaluate.", valueName: "CHECKPOINT"))
  var checkpoint: String?

  @Option(
    help: ArgumentHelp(
      StoredNormalizationOption.modelHelp + " Without CHECKPOINT, the checkpoint itself (deprecated).",
      valueName: "NAME|SPEC"))
  var model: String?

  @OptionGroup var stored: StoredNormalizationOption

  @Option(help: "mnist (bundled) or fashion-mnist. (default: the checkpoint's dataset, else mnist)")
  var dataset: DatasetName?

  @Option(
    help: ArgumentHelp(
      "Read the test images from DIR: IDX files (raw or .gz), CIFAR-10's binary files, or an image folder's test/CLASS/… .",
      valueName: "DIR"))
  var data: String?

  @Option(
    parsing: .unconditional,
    help: "Worker threads. (default: the physical cores the process may use, split among the MPI ranks on a node)")
  var threads: Int?

  @Flag(help: "Print one JSON object with the same field names as train's summary.")
  var json = false

  /// The `--json` output: a subset of `RunSummary`'s fields, with the same names.
  struct Output: Encodable {
    let model: String
    let dataset: String
    let testImages: Int
    let threads: Int
    let seconds: Double
    /// Null when not finite (see `testNonFinite`).
    let testLoss: FiniteNumber
    /// How many test images' outputs overflowed.
    let testNonFinite: Int
    let testAccuracy: Double
    let perClass: [Evaluation.ClassMetrics]
    let confusionMatrix: [[Int]]
    let parametersSHA256: String
  }

  func validate() throws {
    switch (checkpoint, model) {
    case (nil, nil): throw ValidationError("give the checkpoint to evaluate: ptrain evaluate CHECKPOINT")
    default: break
    }
  }

  func run() throws {
    try CPUSupport.requireVectorUnits()
    if checkpoint == nil {
      Terminal.warn("--model PATH is deprecated; name the checkpoint first: ptrain evaluate CHECKPOINT")
    }
    let model = checkpoint ?? self.model!
    let saved = try stored.load(model, modelText: checkpoint == nil ? nil : self.model)
    let (loaded, trainer) = try Self.prepare(
      saved, dataset: dataset, data: data, threads: threads, topology: try placement.topology())
    Terminal.error(
      "ptrain: evaluating \(model) on \(loaded.name) (\(loaded.directory ?? "bundled")): \(loaded.test.count) test images"
    )
    let clock = ContinuousClock()
    let start = clock.now
    let evaluation = try trainer.evaluate(loaded.test)
    let seconds = (clock.now - start).seconds
    Report.warnAboutOverflow(evaluation, of: "test")
    if json {
      try printJSON(
        Output(
          model: model, dataset: loaded.name, testImages: loaded.test.count, threads: trainer.options.threads,
          seconds: seconds, testLoss: FiniteNumber(evaluation.loss),
          testNonFinite: evaluation.nonFiniteLosses, testAccuracy: evaluation.accuracy, perClass: evaluation.classes,
          confusionMatrix: evaluation.confusion, parametersSHA256: trainer.parametersSHA256))
    } else {
      try Terminal.output(
        Report.tables(
          evaluation: evaluation, classNames: loaded.classNames,
          sha256: trainer.parametersSHA256))
      try Terminal.output(
        Report.headline(evaluation: evaluation)
          + "  (\(model) on the \(loaded.test.count) test images of \(loaded.name))")
    }
  }

  /// Loads the data `checkpoint` is evaluated on (`dataset` or `data`, else its own) and
  /// makes a trainer holding its parameters, checking that the two fit. For `evaluate` and
  /// `report`.
  static func prepare(
    _ checkpoint: Checkpoint, dataset: DatasetName?, data: String?, threads: Int?, topology: Topology
  ) throws -> (Dataset, Trainer) {
    let threads = try threadCount(threads, topology: topology)
    let path = checkpoint.path
    // Built by hand rather than parsed: every option `load` reads must be set.
    var source = DataOptions()
    source.dataset = dataset
    source.data = data
    source.imageSize = nil
    source.skipBadImages = false
    let loaded = try source.load(
      defaultsFrom: checkpoint.metadata, of: path, threads: threads, shape: checkpoint.model.input, testOnly: true)
    guard loaded.test.count > 0 else {
      throw PTrainError("\(loaded.directory ?? loaded.name) has no test set (no test/ folder) to evaluate \(path) on")
    }
    guard loaded.test.shape == checkpoint.model.input else {
      throw PTrainError(
        "\(path)'s model takes \(checkpoint.model.input) images but \(loaded.name)'s are \(loaded.test.shape)")
    }
    try LabeledImages.requireLabels(
      loaded.test.labels, below: checkpoint.plan.classes, name: "\(loaded.name) test set, for \(path)")
    let trainer = try Trainer(
      options: TrainingOptions(threads: threads, epochs: 1), model: checkpoint.model,
      normalization: checkpoint.normalization, topology: topology)
    try trainer.loadParameters(
      checkpoint.parameters, state: checkpoint.runningStatistics, from: checkpoint.plan,
      layers: Set(checkpoint.plan.parameterLayers.map(\.index)))
    return (loaded, trainer)
  }
}
