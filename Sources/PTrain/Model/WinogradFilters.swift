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

  /// Transforms the filters of `inputChannels` (all by default) from HWIO `weights`.
  /// Cost: O(16 · inputChannels.count · outChannels).
  public func update(from weights: UnsafePointer<Float>, inputChannels: Range<Int>? = nil) {
    winogradTransformWeights(weights, shape: shape, inputChannels: inputChannels, into: forward.base)
    guard keepsFlipped else { return }
    winogradFlipTransformedWeights(forward.base, shape: shape, inputChannels: inputChannels, into: flipped.base)
  }

  /// Worker `worker`'s share of the input channels when `workers` fill the filters
  /// together: contiguous, as even as possible, empty when there are more workers than
  /// channels.
  public func inputChannels(ofWorker worker: Int, workers: Int) -> Range<Int> {
    let channels = shape.inChannels
    return (worker * channels / workers)..<((worker + 1) * channels / workers)
  }
}
