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
      not its transforms). --list shows the built-in models.
      """)

  @OptionGroup var model: ModelOptions

  @Option(
    help: ArgumentHelp(
      "The input shape for a model text without an input clause, as HxWxC.", valueName: "HxWxC"))
  var input: String?

  @Flag(help: "List the built-in models and their texts.")
  var list = false

  @Flag(help: "Print one JSON object instead of the table.")
  var json = false

  struct Row: Encodable {
    let index: Int
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
    let definition = try model.definition(input: shape)
    let plan = try usage { try ModelPlan(definition) }
    let rows = plan.layers.map { layer in
      Row(
        index: layer.index, name: layer.name, layer: layer.layer.text,
        outputShape: layer.outputIsFlat
          ? [layer.output.count] : [layer.output.height, layer.output.width, layer.output.channels],
        parameters: layer.parameterRange.count, trainingMflops: Double(layer.executedTrainingFlops) / 1e6,
        kernel: layer.kernel?.rawValue, torch: layer.torchModule)
    }
    let buffers = plan.stateCount
    if json {
      struct Output: Encodable {
        let model: String
        let name: String?
        let layers: [Row]
        let parameters: Int
        let batchNormStatistics: Int
        let trainingMflopsPerImage: Double
        let directConvolutionMflopsPerImage: Double
      }
      try printJSON(
        Output(
          model: definition.text, name: definition.builtInName, layers: rows, parameters: plan.parameterCount,
          batchNormStatistics: buffers, trainingMflopsPerImage: Double(plan.executedTrainingFlopsPerImage) / 1e6,
          directConvolutionMflopsPerImage: Double(plan.trainingFlopsPerImage) / 1e6))
      return
    }
    let layerWidth = max(rows.map(\.layer.count).max() ?? 0, 5)
    let nameWidth = max(rows.map(\.name.count).max() ?? 0, 4)
    func pad(_ text: String, _ width: Int) -> String { text.padding(toLength: width, withPad: " ", startingAt: 0) }
    try Terminal.output("model: \(definition.builtInName ?? "custom"), input \(definition.input)")
    try Terminal.output(
      "  #  " + pad("name", nameWidth) + "  " + pad("layer", layerWidth)
        + "  output        parameters  MFLOP/image  kernel")
    for row in rows {
      let shape = row.outputShape.map(String.init).joined(separator: "x")
      try Terminal.output(
        String(format: "%3d  ", row.index) + pad(row.name, nameWidth) + "  " + pad(row.layer, layerWidth) + "  "
          + pad(shape, 12) + String(format: "%12d  %11.2f  ", row.parameters, row.trainingMflops) + (row.kernel ?? ""))
    }
    try Terminal.output(
      String(
        format:
          "total: %d parameters, %d BatchNorm running statistics; %.2f MFLOP per training image (%.2f as direct convolution)",
        plan.parameterCount, buffers, Double(plan.executedTrainingFlopsPerImage) / 1e6,
        Double(plan.trainingFlopsPerImage) / 1e6))
    try Terminal.output("PyTorch: nn.Sequential(" + plan.layers.map(\.torchModule).joined(separator: ", ") + ")")
  }
}
