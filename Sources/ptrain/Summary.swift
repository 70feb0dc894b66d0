import ArgumentParser
import Foundation
import PTrain

/// `ptrain summary`: a model's layers, shapes, parameters, cost and kernels, as Keras's
/// `model.summary()` prints them.
struct Summary: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "summary",
    abstract: "Show a model's layers, output shapes, parameters, training cost and kernels.",
    discussion: """
      The index is the layer's index in the equivalent PyTorch nn.Sequential, which names its \
      tensors (3.weight); --freeze takes it or the layer's name. MFLOP per image count one \
      training image's forward and backward passes as the kernels do them (Winograd's GEMMs, \
      not its transforms). --list shows the built-in models. Given a CHECKPOINT, it shows the \
      checkpoint's model, then the data and training settings it was saved with.
      """)

  @Argument(
    help: ArgumentHelp(
      "A .safetensors checkpoint: its model, and the data and training settings it was saved with.",
      valueName: "CHECKPOINT"))
  var checkpoint: String?

  @OptionGroup var model: ModelOptions
  @OptionGroup var stored: StoredNormalizationOption

  @Option(
    help: ArgumentHelp(
      "The input shape for a model text without an input clause, as HxWxC.", valueName: "HxWxC"))
  var input: String?

  @Option(parsing: .unconditional, help: "Batch size for the training memory figure.")
  var batchSize = 32

  @Option(
    parsing: .unconditional,
    help:
      "Worker threads for the training memory figure. (default: the physical cores the process may use, split among the MPI ranks on a node)"
  )
  var threads: Int?

  @Flag(help: "List the built-in models and their texts.")
  var list = false

  @Flag(help: "Print one JSON object instead of the table.")
  var json = false

  /// The `__metadata__` entries of `checkpoint` that tell its data and training, with
  /// its normalisation and class names as it reads them.
  static func settings(of checkpoint: Checkpoint) -> [String: String] {
    let shown = [
      "dataset", "data_directory", "train_images", "image_size", "validation_split", "augment", "optimizer_settings",
      "lr_schedule", "warmup_steps", "label_smoothing", "learning_rate", "batch_size", "epochs", "epochs_completed",
      "optimizer_step", "seed", "frozen", "source_model", "best_epoch", "best_validation_accuracy", "test_accuracy",
      "test_loss", "validation_accuracy", "validation_loss",
    ]
    var result = checkpoint.metadata.filter { shown.contains($0.key) && !$0.value.isEmpty }
    result["normalize"] = checkpoint.normalization.description
    result["class_names"] = checkpoint.classNames.joined(separator: ", ")
    return result
  }

  struct Row: Encodable {
    let index: Int
    /// The module path in PyTorch (`3`, or `3.body.0` inside a residual block).
    let path: String
    let name: String
    let layer: String
    let outputShape: [Int]
    let parameters: Int
    let trainingMflops: Double
    let kernel: String?
    let torch: String
  }

  func run() throws {
    if list {
      for (name, text) in ModelDefinition.builtIn {
        try Terminal.output("\(name.padding(toLength: 12, withPad: " ", startingAt: 0))\(text)")
      }
      return
    }
    let shape = try input.map { text -> ImageShape in
      let parts = text.lowercased().split(separator: "x").map { Int($0) }
      guard parts.count == 3, parts.allSatisfy({ ($0 ?? 0) >= 1 && ($0 ?? 0) <= 4096 }) else {
        throw ValidationError("--input takes HxWxC, like 32x32x3; got '\(text)'")
      }
      return ImageShape(height: parts[0]!, width: parts[1]!, channels: parts[2]!)
    }
    if checkpoint != nil && input != nil {
      throw ValidationError("--input is for a model text; a CHECKPOINT's model has its input")
    }
    if checkpoint == nil && stored.normalize != nil {
      throw ValidationError("--normalize is for a CHECKPOINT that does not store its normalisation")
    }
    let saved = try checkpoint.map { try stored.load($0, modelText: model.model) }
    let definition = try saved?.model ?? model.definition(input: shape)
    let plan = try usage { try ModelPlan(definition) }
    let rows = plan.layers.map { layer in
      Row(
        index: layer.index, path: layer.torchPath, name: layer.name, layer: layer.text,
        outputShape: layer.outputIsFlat
          ? [layer.output.count] : [layer.output.height, layer.output.width, layer.output.channels],
        parameters: layer.parameterRange.count, trainingMflops: Double(layer.executedTrainingFlops) / 1e6,
        kernel: layer.kernel?.rawValue ?? plan.fusedChoice(layer), torch: layer.torchModule)
    }
    let buffers = plan.stateCount
    let options = TrainingOptions(threads: try threadCount(threads, topology: try Topology()), batchSize: batchSize)
    try usage { try options.validate() }
    let memory = MemoryEstimate(plan: plan, options: options, workers: options.threads, stepImages: batchSize)
    let memoryLine =
      "training memory at batch \(batchSize) on \(options.threads) thread(s): about \(MemoryEstimate.describe(memory.total)) "
      + "(parameters and Adam's state \(MemoryEstimate.describe(memory.parameters)), gradients \(MemoryEstimate.describe(memory.gradients)), "
      + "prepared filters \(MemoryEstimate.describe(memory.preparedWeights)), activations \(MemoryEstimate.describe(memory.replicas))), besides the data"
    if json {
      struct Output: Encodable {
        let model: String
        let name: String?
        let layers: [Row]
        let parameters: Int
        let batchNormStatistics: Int
        let trainingMflopsPerImage: Double
        let directConvolutionMflopsPerImage: Double
        let trainingMemoryBytes: Int
        /// With a CHECKPOINT: its data and training settings (`__metadata__` entries).
        let checkpoint: [String: String]?
      }
      try printJSON(
        Output(
          model: definition.text, name: definition.builtInName, layers: rows, parameters: plan.parameterCount,
          batchNormStatistics: buffers, trainingMflopsPerImage: Double(plan.executedTrainingFlopsPerImage) / 1e6,
          directConvolutionMflopsPerImage: Double(plan.trainingFlopsPerImage) / 1e6, trainingMemoryBytes: memory.total,
          checkpoint: saved.map(Self.settings)))
      return
    }
    // Every column as wide as its widest entry: nothing is cut, whatever the model.
    let shapes = rows.map { $0.outputShape.map(String.init).joined(separator: "x") }
    let counts = rows.map { $0.parameters.formatted(.number.grouping(.automatic)) }
    let flops = rows.map { String(format: "%.2f", $0.trainingMflops) }
    let layerWidth = max(rows.map(\.layer.count).max() ?? 0, 5)
    let nameWidth = max(rows.map(\.name.count).max() ?? 0, 4)
    let shapeWidth = max(shapes.map(\.count).max() ?? 0, 6)
    let countWidth = max(counts.map(\.count).max() ?? 0, 10)
    let flopWidth = max(flops.map(\.count).max() ?? 0, 11)
    let pathWidth = max(rows.map(\.path.count).max() ?? 0, 3)
    func pad(_ text: String, _ width: Int) -> String {
      text.padding(toLength: max(width, text.count), withPad: " ", startingAt: 0)
    }
    func right(_ text: String, _ width: Int) -> String {
      String(repeating: " ", count: max(width - text.count, 0)) + text
    }
    if let saved {
      try Terminal.output("checkpoint: \(saved.path)")
      for (key, value) in Self.settings(of: saved).sorted(by: { $0.key < $1.key }) {
        try Terminal.output("  \(key.padding(toLength: 24, withPad: " ", startingAt: 0))\(value)")
      }
    }
    try Terminal.output("model: \(definition.builtInName ?? "custom"), input \(definition.input)")
    try Terminal.output(
      right("#", pathWidth) + "  " + pad("name", nameWidth) + "  " + pad("layer", layerWidth) + "  "
        + pad("output", shapeWidth) + "  "
        + right("parameters", countWidth) + "  " + right("MFLOP/image", flopWidth) + "  kernel")
    for (index, row) in rows.enumerated() {
      try Terminal.output(
        right(row.path, pathWidth) + "  " + pad(row.name, nameWidth) + "  " + pad(row.layer, layerWidth) + "  "
          + pad(shapes[index], shapeWidth) + "  " + right(counts[index], countWidth) + "  "
          + right(flops[index], flopWidth) + "  " + (row.kernel ?? ""))
    }
    try Terminal.output(
      "total: \(plan.parameterCount.formatted(.number.grouping(.automatic))) parameters, \(buffers) BatchNorm running statistics; "
        + String(
          format: "%.2f MFLOP per training image (%.2f as direct convolution)",
          Double(plan.executedTrainingFlopsPerImage) / 1e6, Double(plan.trainingFlopsPerImage) / 1e6))
    try Terminal.output(memoryLine)
    try Terminal.output("PyTorch: " + plan.torchSequential)
  }
}
