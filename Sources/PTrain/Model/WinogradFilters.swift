/// A convolution's filters in the Winograd domain: for the forward pass and, flipped, for
/// the input gradient. A trainer keeps one set that all its replicas read; its workers
/// fill it together, each transforming a slice of the input channels, after every update.
///
/// `@unchecked Sendable` for the same reason as `PreparedWeights`, which holds it: each
/// worker writes its own slice, and all read only after a barrier.
package final class WinogradFilters: @unchecked Sendable {
  // Safe to share: filled between barriers, a disjoint slice of input channels per
  // worker, and only read while the workers compute.
  package let shape: Conv3x3Shape
  /// The output tile: 2 for F(2×2, 3×3), 4 for F(4×4, 3×3), 5 for F(5×5, 3×3).
  package let outputTile: Int
  /// Whether the flipped filters are kept (only a layer whose input gradient is needed).
  package let keepsFlipped: Bool
  package let forward: AlignedFloats
  package let flipped: AlignedFloats
  /// F(4×4) or F(5×5) with flipped filters: the taps transposed to [tap][out][in] on the way.
  let turnedTaps: AlignedFloats

  package init(shape: Conv3x3Shape, outputTile: Int = 2, keepsFlipped: Bool) {
    self.shape = shape
    self.outputTile = outputTile
    self.keepsFlipped = keepsFlipped
    let count =
      switch outputTile {
      case 4: WinogradF4.weightCount(shape)
      case 5: WinogradF5.weightCount(shape)
      default: winogradWeightCount(shape)
      }
    forward = AlignedFloats(count: count)
    flipped = AlignedFloats(count: keepsFlipped ? count : 0)
    turnedTaps = AlignedFloats(count: keepsFlipped && outputTile > 2 ? 9 * shape.inChannels * shape.outChannels : 0)
  }

  /// Transforms, from HWIO `weights`, the filters of share `part` of `parts` of the input
  /// channels (`evenShare`); by default all of them. Workers that fill the filters
  /// together each pass their own index. Cost: O(points · in · out / parts).
  package func update(from weights: UnsafePointer<Float>, part: Int = 0, of parts: Int = 1) {
    let channels = evenShare(of: shape.inChannels, part: part, parts: parts)
    /// Fills this slice through `scheme`'s transforms.
    func transform<Scheme: WinogradScheme>(_ scheme: Scheme.Type) {
      Scheme.transformWeights(
        weights, shape: shape, inputChannels: channels, into: forward.base, flipped: keepsFlipped ? flipped.base : nil,
        turnedTaps: turnedTaps.base)
    }
    switch outputTile {
    case 4: return transform(WinogradF4.self)
    case 5: return transform(WinogradF5.self)
    default: break
    }
    winogradTransformWeights(weights, shape: shape, inputChannels: channels, into: forward.base)
    guard keepsFlipped else { return }
    winogradFlipTransformedWeights(forward.base, shape: shape, inputChannels: channels, into: flipped.base)
  }
}
