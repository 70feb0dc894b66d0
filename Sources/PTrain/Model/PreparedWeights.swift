/// Forms of the weights that depend only on the parameters and that the kernels read
/// instead of the weights themselves: a Winograd layer's transformed filters (and, when
/// its input gradient is needed, the flipped ones), and an im2col layer's transposed
/// filters for its input gradient. A trainer keeps one set that all replicas read; its
/// workers fill it together after every update, each a slice.
///
/// `@unchecked Sendable` because every worker reads it: `update` writes disjoint slices,
/// one per worker, and the workers read only after the barrier that follows.
package final class PreparedWeights: @unchecked Sendable {
  // Safe to share: the buffers are filled between barriers, a disjoint slice per worker,
  // and only read while the workers compute.
  package let plan: ModelPlan
  /// Per layer: the Winograd filters of a Winograd convolution.
  let winograd: [Int: WinogradFilters]
  /// Per layer: an im2col convolution's filters as out × patch, for its input gradient.
  let transposed: [Int: AlignedFloats]

  /// Buffers for `plan`; `inputGradients[i]` says whether layer i's input gradient is ever
  /// computed (only then are flipped or transposed filters kept).
  package init(plan: ModelPlan, inputGradients: [Bool]) {
    self.plan = plan
    var winograd: [Int: WinogradFilters] = [:]
    var transposed: [Int: AlignedFloats] = [:]
    for layer in plan.layers {
      guard let weight = layer.weight, layer.layer.kind is ConvLayer else { continue }
      if let tile = layer.kernel?.winogradOutputTile {
        winograd[layer.index] = WinogradFilters(
          shape: Conv3x3Shape(layer), outputTile: tile, keepsFlipped: inputGradients[layer.index])
      } else if layer.kernel == .im2colGemm && inputGradients[layer.index] {
        transposed[layer.index] = AlignedFloats(count: weight.count)
      }
    }
    self.winograd = winograd
    self.transposed = transposed
  }

  /// Fills share `part` of `parts` of every layer's prepared weights from `parameters`,
  /// skipping the layers in `skipping` (frozen ones, already filled). Workers that fill
  /// them together each pass their own index. Cost: O(weights / parts).
  package func update(from parameters: UnsafePointer<Float>, part: Int = 0, of parts: Int = 1, skipping: Set<Int> = [])
  {
    for (index, filters) in winograd where !skipping.contains(index) {
      filters.update(from: parameters + plan.layers[index].weight!.offset, part: part, of: parts)
    }
    for (index, target) in transposed where !skipping.contains(index) {
      let layer = plan.layers[index]
      let patch = layer.weight!.count / layer.output.channels
      transposeMatrix(
        parameters + layer.weight!.offset, rows: patch, columns: layer.output.channels,
        rowRange: evenShare(of: patch, part: part, parts: parts), into: target.base)
    }
  }
}

extension Conv3x3Shape {
  /// The 3×3, stride-1 convolution of a planned layer.
  init(_ layer: ModelPlan.PlannedLayer) {
    guard let conv = layer.layer.kind as? ConvLayer, conv.kernel == 3, conv.stride == 1 else {
      preconditionFailure("not a 3x3 stride-1 conv")
    }
    self.init(
      height: layer.input.height, width: layer.input.width, inChannels: layer.input.channels,
      outChannels: layer.output.channels, padding: conv.pad)
  }
}

extension ConvShape {
  /// The convolution of a planned layer.
  init(_ layer: ModelPlan.PlannedLayer) {
    guard let conv = layer.layer.kind as? ConvLayer else { preconditionFailure("not a conv") }
    self.init(
      height: layer.input.height, width: layer.input.width, inChannels: layer.input.channels,
      outChannels: conv.filters, kernel: conv.kernel, stride: conv.stride, padding: conv.pad)
  }
}
