/// Batch normalisation over the channels: `batchnorm`. On a map it is PyTorch's
/// `BatchNorm2d` (a map's channels), after flatten `BatchNorm1d` (every value its own
/// channel). Parameters: the scale γ (`weight`, starting at 1) then the shift β (`bias`,
/// 0); state: the running mean (0) and variance (1), which get no gradient.
package struct BatchNormLayer: LayerKind {
  package static let word = "batchnorm"
  /// The epsilon added to the variance and the weight of each batch in the running
  /// statistics: PyTorch's defaults.
  package static let epsilon: Float = 1e-5
  package static let momentum: Float = 0.1

  package static func parse(_ text: inout ModelTextParser) throws -> BatchNormLayer { BatchNormLayer() }
  package var text: String { "batchnorm" }

  package func plan(_ layer: inout LayerPlanning) throws {
    let channels = layer.inputChannels
    layer.flattenedMap = layer.inputIsFlat ? layer.flattenedFrom : nil
    layer.addWeight([channels])
    layer.addBias([channels])
    layer.addRunningStatistics(channels: channels)
  }

  package func torchModule(_ layer: ModelPlan.PlannedLayer) -> String {
    layer.inputIsFlat ? "BatchNorm1d(\(layer.input.count))" : "BatchNorm2d(\(layer.input.channels))"
  }

  package func operation(_ layer: ModelPlan.PlannedLayer) -> LayerOperation { .batchNorm }

  package func initialize(
    _ layer: ModelPlan.PlannedLayer, parameters values: inout [Float], using generator: inout SeededGenerator
  ) {
    for i in layer.weight!.range { values[i] = 1 }
  }

  package func initialize(_ layer: ModelPlan.PlannedLayer, state values: inout [Float]) {
    for i in layer.runningVariance!.range { values[i] = 1 }
  }

  package var storesReLU: Bool { true }
}

extension Layer {
  /// Batch normalisation over the channels (BatchNorm2d on a map, BatchNorm1d after flatten).
  public static let batchNorm = Layer(BatchNormLayer())
}
