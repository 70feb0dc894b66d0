/// Max-pooling: `maxpool SIZE [stride S]`, PyTorch's `MaxPool2d`. Where a ReLU lies below,
/// its backward takes the ReLU's gradient too (`Fusions.reluGradientInMaxPool`).
package struct MaxPoolLayer: LayerKind {
  package let window: PoolingWindow

  package static let word = "maxpool"
  package static func parse(_ text: inout ModelTextParser) throws -> MaxPoolLayer {
    MaxPoolLayer(window: try PoolingWindow.parse(&text))
  }
  package var text: String { "maxpool" + window.text }
  package func plan(_ layer: inout LayerPlanning) throws { try window.plan(&layer) }
  package func torchModule(_ layer: ModelPlan.PlannedLayer) -> String { "MaxPool2d(\(window.torchArguments))" }
  package func operation(_ layer: ModelPlan.PlannedLayer) -> LayerOperation { .maxPool }
}

extension Layer {
  /// Max-pooling over `size` × `size` windows moved by `stride` (default: `size`).
  public static func maxPool(size: Int, stride: Int? = nil) -> Layer {
    Layer(MaxPoolLayer(window: PoolingWindow(size: size, stride: stride)))
  }
  /// Max-pooling: `.maxPool(2)`.
  public static func maxPool(_ size: Int, stride: Int? = nil) -> Layer { .maxPool(size: size, stride: stride) }
}
