extension ModelPlan {
  /// Copies the parameters of the layers at `layers` from `values`, laid out for
  /// `source`, into `parameters`, laid out for this plan, and their BatchNorm statistics
  /// from `state` into `statistics` when `state` holds `source`'s. Before copying anything
  /// it checks every such layer: it must exist in both plans and be the same layer on the
  /// same input; else it throws naming the first that is not. For starting from
  /// pre-trained weights. Cost: O(parameters).
  package func copyLayers(
    _ layers: Set<Int>, from source: ModelPlan, values: UnsafeBufferPointer<Float>, state: UnsafeBufferPointer<Float>,
    into parameters: UnsafeMutablePointer<Float>, statistics: UnsafeMutablePointer<Float>
  ) throws {
    guard values.count == source.parameterCount else {
      throw PTrainError("expected \(source.parameterCount) parameters, got \(values.count)")
    }
    let indices = layers.sorted()
    for index in indices {
      guard index >= 0, index < source.layers.count, index < self.layers.count else {
        throw PTrainError(
          "layer \(index) is not in both models (\(source.layers.count) and \(self.layers.count) layers)")
      }
      let from = source.layers[index]
      let to = self.layers[index]
      guard from.layer == to.layer, from.input == to.input, from.parameterRange.count == to.parameterRange.count,
        from.torchPath == to.torchPath
      else {
        throw PTrainError(
          "layer \(index) differs between the models: \(from.torchPath) \(from.text) and \(to.torchPath) \(to.text)")
      }
    }
    for index in indices {
      let (from, to) = (source.layers[index], self.layers[index])
      for (target, origin) in zip(to.parameterRange, from.parameterRange) { parameters[target] = values[origin] }
      if let mean = to.runningMean, let sourceMean = from.runningMean, state.count == source.stateCount {
        for k in 0..<(2 * mean.count) { statistics[mean.offset + k] = state[sourceMean.offset + k] }
      }
    }
  }
}
