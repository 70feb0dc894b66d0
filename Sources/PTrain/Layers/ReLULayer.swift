/// The rectifier, max(x, 0), on every value: `relu`. The layer below applies it as it
/// stores its output where it can (`Fusions.reluOnStore`).
package struct ReLULayer: LayerKind {
  package static let word = "relu"
  package static func parse(_ text: inout ModelTextParser) throws -> ReLULayer { ReLULayer() }
  package var text: String { "relu" }
  package func plan(_ layer: inout LayerPlanning) throws {}
  package func torchModule(_ layer: ModelPlan.PlannedLayer) -> String { "ReLU()" }
  package func operation(_ layer: ModelPlan.PlannedLayer) -> LayerOperation { .relu }
}

extension Layer {
  /// The rectifier, max(x, 0).
  public static let relu = Layer(ReLULayer())
}
