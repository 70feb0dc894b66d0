/// Average pooling: `avgpool SIZE [stride S]`, PyTorch's `AvgPool2d`.
package struct AvgPoolLayer: LayerKind {
  package let window: PoolingWindow

  package static let word = "avgpool"
  package static func parse(_ text: inout ModelTextParser) throws -> AvgPoolLayer {
    AvgPoolLayer(window: try PoolingWindow.parse(&text))
  }
  package var text: String { "avgpool" + window.text }
  package func plan(_ layer: inout LayerPlanning) throws { try window.plan(&layer) }
  package func torchModule(_ layer: ModelPlan.PlannedLayer) -> String { "AvgPool2d(\(window.torchArguments))" }
  package func operation(_ layer: ModelPlan.PlannedLayer) -> LayerOperation { .avgPool }
}

extension Layer {
  /// Average pooling over `size` × `size` windows moved by `stride` (default: `size`).
  public static func avgPool(size: Int, stride: Int? = nil) -> Layer {
    Layer(AvgPoolLayer(window: PoolingWindow(size: size, stride: stride)))
  }
  /// Average pooling: `.avgPool(2)`.
  public static func avgPool(_ size: Int, stride: Int? = nil) -> Layer { .avgPool(size: size, stride: stride) }
}
