/// A map's values as one vector, for a dense layer: `flatten`. ptrain keeps the H,W,C
/// order of the map; PyTorch's `Flatten` gives C,H,W, so the dense (or BatchNorm) layer
/// that reads the vector is permuted when its tensors are written for PyTorch.
package struct FlattenLayer: LayerKind {
  package static let word = "flatten"
  package static func parse(_ text: inout ModelTextParser) throws -> FlattenLayer { FlattenLayer() }
  package var text: String { "flatten" }

  package func plan(_ layer: inout LayerPlanning) throws {
    // Layers between flatten and dense (relu, dropout, batchnorm) keep the order.
    if !layer.inputIsFlat { layer.flattenedFrom = layer.input }
    layer.outputIsFlat = true
    layer.output = ImageShape(height: 1, width: 1, channels: layer.input.count)
  }

  package func torchModule(_ layer: ModelPlan.PlannedLayer) -> String { "Flatten()" }
  package func operation(_ layer: ModelPlan.PlannedLayer) -> LayerOperation { .flatten }
}

extension Layer {
  /// A map's values as one vector, for a dense layer.
  public static let flatten = Layer(FlattenLayer())
}
