/// What a training step does with a BatchNorm's batch sums outside the replica's passes.
extension BatchNormLayer {
  /// Adds one shard's γ and β gradients to its gradient `slot`: they are the shard's own
  /// sums of `Σ dy · x̂` and `Σ dy` (`sums`: 2 · channels, `Σ dy` first), which the
  /// backward pass adds for the input gradient anyway. Cost: O(channels).
  static func addParameterGradients(
    sums: UnsafePointer<Float>, layer: ModelPlan.PlannedLayer, into slot: UnsafeMutablePointer<Float>
  ) {
    let channels = layer.runningMean!.count
    let (gamma, beta) = (layer.weight!.offset, layer.bias!.offset)
    for c in 0..<channels {
      slot[gamma + c] += sums[channels + c]
      slot[beta + c] += sums[c]
    }
  }

  /// Moves the layer's running statistics in `state` towards the step's batch mean and
  /// (unbiased) variance, as PyTorch does: `running = (1 − momentum) · running +
  /// momentum · batch`. Cost: O(channels).
  static func updateRunningStatistics(
    of layer: ModelPlan.PlannedLayer, mean: UnsafePointer<Float>, variance: UnsafePointer<Float>,
    in state: UnsafeMutablePointer<Float>
  ) {
    for c in 0..<layer.runningMean!.count {
      let m = state + layer.runningMean!.offset + c
      let v = state + layer.runningVariance!.offset + c
      m.pointee = (1 - momentum) * m.pointee + momentum * mean[c]
      v.pointee = (1 - momentum) * v.pointee + momentum * variance[c]
    }
  }
}
