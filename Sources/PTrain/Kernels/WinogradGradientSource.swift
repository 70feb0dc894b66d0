// Where an F(4×4) or F(5×5) convolution's weight gradient reads the gradient at its
// output: the stored map, or the zero-bordered copies that its input gradient's transform
// filled. With `Fusions.batchNormGradientInConvolution` those copies are the only place
// that gradient is written: the input gradient of the training BatchNorm above the
// convolution is made as they are filled (`BatchNormInputGradient`), instead of stored
// over the map by `batchNormInputGradient` and then copied into them.

/// The gradient at a convolution's output, for the images of one call: a stored map, or
/// the interiors of the zero-bordered copies the input gradient's transform filled.
@_spi(Kernels) public struct WinogradGradientSource {
  /// The first image's pixel (0, 0).
  let origin: UnsafePointer<Float>
  let imageFloats: Int, rowFloats: Int, channels: Int

  /// A stored map: `height` × `width` × `channels` per image, one image after another.
  public init(stored base: UnsafePointer<Float>, height: Int, width: Int, channels: Int) {
    origin = base
    imageFloats = height * width * channels
    rowFloats = width * channels
    self.channels = channels
  }

  /// Copies of `tiling`'s input, one per image (`WinogradTiling.paddedCount` Floats
  /// apart), as the input gradient's transform fills them with `BatchNormInputGradient`.
  package init(padded base: UnsafePointer<Float>, tiling t: WinogradTiling) {
    origin = base + (t.padding * t.paddedWidth + t.padding) * t.channels
    imageFloats = t.paddedCount
    rowFloats = t.paddedWidth * t.channels
    channels = t.channels
  }

  /// The 16 channels from `channel` of pixel (`y`, `x`) of image `image`.
  @inline(__always) func lane(image: Int, y: Int, x: Int, channel: Int) -> WinogradLane {
    UnsafeRawPointer(origin + image * imageFloats + y * rowFloats + x * channels + channel).loadUnaligned(
      as: WinogradLane.self)
  }
}

/// The input gradient of a BatchNorm in training, made from its output gradient and its
/// input (NHWC, one image after another) as it is written; `batchNormInputGradient` runs
/// its blocks of 16 channels through it.
@_spi(Kernels) public struct BatchNormInputGradient {
  /// The BatchNorm's output gradient, and its input, for the call's first image.
  let outputGradient: UnsafePointer<Float>
  let input: UnsafePointer<Float>
  /// The BatchNorm's terms (`withBatchNormGradientTerms`).
  let terms: BatchNormGradientTerms

  /// Writes the gradient of the whole 16-channel blocks of `pixels` pixels of `channels`
  /// from `offset` (Floats from the first image's start, a pixel's) to `target`.
  /// Cost: 2 loads, 2 FMA and a subtract per 16 values.
  @inline(__always) func write(pixels: Int, channels: Int, from offset: Int, to target: UnsafeMutablePointer<Float>) {
    let blocks = channels / 16
    for p in 0..<pixels {
      for block in 0..<blocks {
        let i = offset + p * channels + block * 16
        store16(
          terms.inputGradient(dy: load16(outputGradient + i), x: load16(input + i), block: block),
          target + p * channels + block * 16)
      }
    }
  }
}
