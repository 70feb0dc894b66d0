/// The mean of each channel over the whole map: `globalavgpool`, H × W × C becomes
/// 1 × 1 × C (PyTorch's `AdaptiveAvgPool2d(1)`).
package struct GlobalAvgPoolLayer: LayerKind {
  package static let word = "globalavgpool"
  package static func parse(_ text: inout ModelTextParser) throws -> GlobalAvgPoolLayer { GlobalAvgPoolLayer() }
  package var text: String { "globalavgpool" }

  package func plan(_ layer: inout LayerPlanning) throws {
    try layer.requireMap()
    layer.output = ImageShape(height: 1, width: 1, channels: layer.input.channels)
  }

  package func torchModule(_ layer: ModelPlan.PlannedLayer) -> String { "AdaptiveAvgPool2d(1)" }
  package func operation(_ layer: ModelPlan.PlannedLayer) -> LayerOperation { .globalAvgPool }
}

extension Layer {
  /// The mean of each channel over the whole map.
  public static let globalAvgPool = Layer(GlobalAvgPoolLayer())
}
