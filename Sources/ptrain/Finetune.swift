import ArgumentParser
import Foundation
import PTrain

/// `ptrain finetune`: start from a pre-trained checkpoint's weights and train on new data.
struct Finetune: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "finetune",
    abstract: "Fine-tune a pre-trained checkpoint on new data, optionally with frozen layers and a new head.",
    discussion: """
      Loads only the weights of --from (not its optimizer state or position) and starts a fresh \
      Adam. Frozen layers keep their weights, get no gradients, and their backward work is \
      skipped. Layers: conv1 (0), conv2 (3), dense (7), named or by their index in PyTorch's \
      nn.Sequential. Try "only N labels" with --train-limit N.
      """)

  @Option(name: .customLong("from"), help: ArgumentHelp("The pre-trained .safetensors checkpoint.", valueName: "PATH"))
  var source: String

  @Option(
    help: ArgumentHelp("Layers to freeze, comma-separated or repeated: conv1,conv2 or 0,3.", valueName: "LAYERS"))
  var freeze: [String] = []

  @Flag(help: "Replace the classifier (dense) with a freshly initialised one.")
  var newHead = false

  @Option(
    help: "Classes of the new head; needs --new-head when it differs from the checkpoint's. (default: the checkpoint's)"
  )
  var classes: Int?

  @OptionGroup var hyperParameters: HyperParameterOptions
  @OptionGroup var data: DataOptions
  @OptionGroup var checkpoints: CheckpointOptions
  @OptionGroup var output: OutputOptions

  func run() throws {
    try CPUSupport.requireVectorUnits()
    try checkpoints.validate()
    let frozen = try usage {
      try freeze.flatMap { $0.split(separator: ",", omittingEmptySubsequences: false) }.map {
        try ModelSpec.Layer(named: $0.trimmingCharacters(in: .whitespaces))
      }
    }.reduce(into: Set<ModelSpec.Layer>()) { $0.insert($1) }
    let checkpoint = try Checkpoint(path: source)
    let classes = self.classes ?? checkpoint.spec.classes
    guard (2...Checkpoint.maximumClasses).contains(classes) else {
      throw ValidationError("--classes must be between 2 and \(Checkpoint.maximumClasses), got \(classes)")
    }
    guard newHead || classes == checkpoint.spec.classes else {
      throw ValidationError(
        "\(source) has a \(checkpoint.spec.classes)-class head but --classes is \(classes); add --new-head to replace it"
      )
    }
    if newHead && frozen.contains(.dense) {
      throw ValidationError("--freeze dense with --new-head would keep the new head at its random initial weights")
    }
    let topology = try Topology()
    let options = try hyperParameters.options(topology: topology, frozen: frozen)
    let dataset = try data.load()
    let train = try data.trainingImages(of: dataset)
    if let largest = (train.labels + dataset.test.labels).max(), Int(largest) >= classes {
      throw PTrainError(
        "\(dataset.name) has label \(largest) but the model has \(classes) classes; pass --new-head --classes \(Int(largest) + 1)"
      )
    }
    let trainer = try Trainer(options: options, spec: ModelSpec(classes: classes), topology: topology)
    trainer.loadParameters(
      checkpoint.parameters, from: checkpoint.spec,
      layers: newHead ? [.conv1, .conv2] : Set(ModelSpec.Layer.allCases))
    warnAboutPlacement(trainer: trainer, topology: topology)
    var metadata = DataOptions.metadata(for: dataset, trainImages: train.count)
    metadata["source_model"] = source
    metadata["new_head"] = String(newHead)
    var session = TrainingSession(
      trainer: trainer, dataset: dataset, train: train, checkpoints: checkpoints, output: output, metadata: metadata,
      activity: "fine-tuning \(source)")
    session.resumeFlags = hyperParameters.resumeFlags + checkpoints.resumeFlags
    try session.run()
  }
}
