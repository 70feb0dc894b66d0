import ArgumentParser
import Foundation
import PTrain

/// `ptrain finetune`: start from a pre-trained checkpoint's weights and train on new data.
struct Finetune: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "finetune",
    abstract: "Fine-tune a pre-trained checkpoint on new data, optionally with frozen layers and a new head.",
    discussion: """
      Loads only the weights of --from (not its optimizer state or position; a PyTorch \
      state_dict, which names neither its model nor its normalisation, is read as --model with \
      --normalize) and starts a fresh \
      optimizer (--optimizer, Adam by default). Frozen layers keep their weights, get no gradients, and their backward work is \
      skipped. Name layers as `ptrain summary` does (for mnist-cnn: conv1, conv2, dense) or by \
      their index in PyTorch's nn.Sequential (0, 3, 7). Try "only N labels" with --train-limit N.
      """)

  @Option(name: .customLong("from"), help: ArgumentHelp("The pre-trained .safetensors checkpoint.", valueName: "PATH"))
  var source: String

  @Option(
    help: ArgumentHelp(
      "Layers to freeze, comma-separated or repeated, by name or index: conv1,conv2 or 0,3.", valueName: "LAYERS"))
  var freeze: [String] = []

  @Flag(help: "Replace the classifier (the last dense layer) with a freshly initialised one.")
  var newHead = false

  @Option(
    parsing: .unconditional,
    help:
      "Classes of the new head; needs --new-head when it differs from the checkpoint's, and must agree with a --model text's head. (default: the --model text's head, else the checkpoint's)"
  )
  var classes: Int?

  @Option(
    help: ArgumentHelp(
      "The model to fine-tune, when it differs from the checkpoint's: a built-in model or a model text whose layers with parameters match the checkpoint's (a new head aside); for a PyTorch state_dict, its model. (default: the checkpoint's model)",
      valueName: "NAME|SPEC"))
  var model: String?
  @OptionGroup var stored: StoredNormalizationOption
  @OptionGroup var placement: PlacementOptions
  @OptionGroup var hyperParameters: HyperParameterOptions
  @OptionGroup var data: DataOptions
  @Option(
    help: ArgumentHelp(
      "Random training-image changes: crop:P, flip, erase[:P], comma-separated (see train --help). (default: none)",
      valueName: "LIST"))
  var augment: String?
  @OptionGroup var checkpoints: CheckpointOptions
  @OptionGroup var output: OutputOptions

  func run() throws {
    try CPUSupport.requireVectorUnits()
    try checkpoints.checkPaths()
    try output.checkLogging()
    // A file that does not store its model (a PyTorch state_dict) is read as --model.
    let checkpoint = try stored.load(source, modelText: model, modelIsTarget: true)
    let sourceClasses = checkpoint.plan.classes
    var target = checkpoint.model
    if let given = model {
      target = try usage { try ModelOptions.definition(given, input: checkpoint.model.input) }
    }
    // The classes: --classes, else a --model text's head, else the checkpoint's.
    if let classes, model != nil, classes != target.classes {
      throw ValidationError("--classes \(classes) disagrees with the \(target.classes)-class head of --model")
    }
    let classes = self.classes ?? (model != nil ? target.classes : sourceClasses)
    guard (2...Checkpoint.maximumClasses).contains(classes) else {
      throw ValidationError("--classes must be between 2 and \(Checkpoint.maximumClasses), got \(classes)")
    }
    guard newHead || classes == sourceClasses else {
      throw ValidationError(
        "\(source) has a \(sourceClasses)-class head but the model asks for \(classes) classes; add --new-head to replace it"
      )
    }
    if target.classes != classes { target = try usage { try target.withHead(classes: classes) } }
    let plan = try usage { try ModelPlan(target) }
    try Self.requireLayersMatch(plan, checkpoint.plan, source: source, newHead: newHead)
    let head = plan.layers.count - 1
    let frozen = try usage {
      try Set(
        freeze.flatMap { $0.split(separator: ",", omittingEmptySubsequences: false) }.map {
          try plan.parameterLayer(named: String($0))
        })
    }
    if newHead && frozen.contains(head) {
      throw ValidationError(
        "--freeze \(plan.layers[head].name) with --new-head would keep the new head at its random initial weights")
    }
    guard plan.parameterLayers.contains(where: { !frozen.contains($0.index) }) else {
      throw ValidationError("--freeze names every layer with parameters; leave at least one to train")
    }
    // The layers to start from the checkpoint: every layer with parameters, but a new head.
    let loaded = Set(plan.parameterLayers.map(\.index).filter { !(newHead && $0 == head) })
    let topology = try placement.topology()
    let augmentation = try usage { try augment.map(Augmentation.init(parsing:)) ?? .none }
    let options = try hyperParameters.options(topology: topology, frozen: frozen, augmentation: augmentation)
    let dataset = try data.load(threads: options.threads, shape: target.input)
    if dataset.imageFolder?.hasTestSet == false {
      throw ValidationError(
        "\(dataset.directory ?? dataset.name) has no test/ folder to evaluate the fine-tuned model on")
    }
    guard dataset.train.shape == target.input else {
      throw ValidationError(
        "\(source)'s model takes \(target.input) images but \(dataset.name)'s are \(dataset.train.shape)")
    }
    try refuseOverwriting(
      inputs: [NamedPath(role: "--from", path: source)] + dataInputs(dataset),
      outputs: [
        checkpoints.save.map { NamedPath(role: "--save", path: $0) },
        output.report.map { NamedPath(role: "--report", path: $0) },
      ].compactMap { $0 })
    let train = try data.trainingImages(of: dataset)
    if let largest = (train.labels + dataset.test.labels).max(), Int(largest) >= classes {
      throw PTrainError(
        "\(dataset.name) has label \(largest) but the model has \(classes) classes; pass --new-head --classes \(Int(largest) + 1)"
      )
    }
    // Features learnt on the source data expect its standardisation.
    let trainer = try Trainer(
      options: options, model: target, normalization: checkpoint.normalization, topology: topology,
      processes: job, trainingImages: train.count)
    try trainer.loadParameters(
      checkpoint.parameters, state: checkpoint.runningStatistics, from: checkpoint.plan, layers: loaded)
    warnAboutPlacement(trainer: trainer, topology: topology)
    var metadata = dataset.checkpointMetadata(trainImages: train.count, classes: plan.classes)
    if let logdir = output.logdir { metadata["logdir"] = URL(fileURLWithPath: logdir).standardizedFileURL.path }
    metadata["source_model"] = source
    metadata["new_head"] = String(newHead)
    var session = TrainingSession(
      trainer: trainer, dataset: dataset, train: train, checkpoints: checkpoints, output: output, metadata: metadata,
      activity: "fine-tuning \(source)")
    session.resumeFlags = hyperParameters.resumeFlags + checkpoints.resumeFlags
    try session.run()
  }

  /// Refuses a model whose layers with parameters (all but a new head) are not the same
  /// layers on the same inputs as `source`'s at the same indices, before any tensor is read.
  static func requireLayersMatch(_ plan: ModelPlan, _ sourcePlan: ModelPlan, source: String, newHead: Bool) throws {
    let head = plan.layers.count - 1
    for layer in plan.parameterLayers where !(newHead && layer.index == head) {
      guard layer.index < sourcePlan.layers.count else {
        throw ValidationError(
          "layer \(layer.torchPath) (\(layer.layer.text)) of --model is not in \(source)'s model, which has \(sourcePlan.layers.count) layers; fine-tuning starts every layer but a new head from the checkpoint"
        )
      }
      let from = sourcePlan.layers[layer.index]
      guard from.layer == layer.layer, from.input == layer.input, from.torchPath == layer.torchPath else {
        throw ValidationError(
          "layer \(layer.torchPath) of --model is \(layer.layer.text) on \(layer.input), but \(source) has \(from.torchPath) \(from.layer.text) on \(from.input) there"
        )
      }
    }
  }
}
