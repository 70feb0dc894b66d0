/// A fully connected layer with `units` outputs: `dense UNITS [nobias]`. Its weight is
/// out×in (PyTorch's `Linear` layout), with `in` in the H,W,C order of the map it was
/// flattened from (permuted to C,H,W for PyTorch), then its bias. The model's last layer
/// is a dense one: its outputs are the classes' logits.
package struct DenseLayer: LayerKind {
  package let units: Int
  package let bias: Bool

  package static let word = "dense"

  package static func parse(_ text: inout ModelTextParser) throws -> DenseLayer {
    let units = try text.integer("the number of units", in: 1...65536)
    guard text.peek().text == "nobias" else { return DenseLayer(units: units, bias: true) }
    _ = text.next()
    return DenseLayer(units: units, bias: false)
  }

  package var text: String { "dense \(units)" + (bias ? "" : " nobias") }

  package func plan(_ layer: inout LayerPlanning) throws {
    guard layer.inputIsFlat else { throw layer.failure("needs a flat input; put flatten before it") }
    let inputs = layer.input.count
    layer.flattenedMap = layer.flattenedFrom
    layer.flattenedFrom = nil
    layer.addWeight([units, inputs])
    if bias { layer.addBias([units]) }
    layer.output = ImageShape(height: 1, width: 1, channels: units)
    layer.kernel = .gemv
    layer.directFlops = 2 * inputs * units * (layer.needsInputGradient ? 3 : 2)
    layer.executedFlops = layer.directFlops
  }

  package func torchModule(_ layer: ModelPlan.PlannedLayer) -> String {
    "Linear(\(layer.input.count), \(units)" + (bias ? ")" : ", bias=False)")
  }

  package func operation(_ layer: ModelPlan.PlannedLayer) -> LayerOperation { .dense }

  /// Glorot-uniform weights (fans in and out), zero bias.
  package func initialize(
    _ layer: ModelPlan.PlannedLayer, parameters values: inout [Float], using generator: inout SeededGenerator
  ) {
    glorotUniform(layer.weight!.range, fanIn: layer.input.count, fanOut: units, into: &values, using: &generator)
  }

  package var storesReLU: Bool { true }
}

extension Layer {
  /// A fully connected layer with `units` outputs.
  public static func dense(units: Int, bias: Bool = true) -> Layer { Layer(DenseLayer(units: units, bias: bias)) }
  /// A dense layer: `.dense(10)`.
  public static func dense(_ units: Int, bias: Bool = true) -> Layer { .dense(units: units, bias: bias) }
}
