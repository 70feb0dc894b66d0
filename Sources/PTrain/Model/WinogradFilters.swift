/// A convolution's filters in the Winograd domain: for the forward pass and, flipped, for
/// the input gradient. A trainer keeps one set that all its replicas read; its workers
/// fill it together, each transforming a slice of the input channels, after every update.
public final class WinogradFilters: @unchecked Sendable {
  public let shape: Conv3x3Shape
  /// Whether the flipped filters are kept (only a layer whose input gradient is needed).
  public let keepsFlipped: Bool
  let forward: AlignedFloats
  let flipped: AlignedFloats

  public init(shape: Conv3x3Shape, keepsFlipped: Bool) {
    self.shape = shape
    self.keepsFlipped = keepsFlipped
    forward = AlignedFloats(count: winogradWeightCount(shape))
    flipped = AlignedFloats(count: keepsFlipped ? winogradWeightCount(shape) : 0)
  }

  /// Transforms, from HWIO `weights`, the filters of share `part` of `parts` of the input
  /// channels (`evenShare`); by default all of them. Workers that fill the filters
  /// together each pass their own index. Cost: O(16 · in · out / parts).
  public func update(from weights: UnsafePointer<Float>, part: Int = 0, of parts: Int = 1) {
    let channels = evenShare(of: shape.inChannels, part: part, parts: parts)
    winogradTransformWeights(weights, shape: shape, inputChannels: channels, into: forward.base)
    guard keepsFlipped else { return }
    winogradFlipTransformedWeights(forward.base, shape: shape, inputChannels: channels, into: flipped.base)
  }
}
