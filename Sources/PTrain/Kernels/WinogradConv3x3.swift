// The three passes of an F(2×2, 3×3) Winograd convolution layer, built from the
// transforms and point GEMMs in Winograd.swift.

/// Scratch sizes, in Floats, for the three passes of a Winograd layer of `shape` on up to
/// `images` images at once.
@_spi(Kernels) public struct WinogradScratch: Sendable {
  /// The forward pass's transformed input, kept for the weight gradient.
  public let inputTiles: Int
  /// The zero-bordered copies of the input and of the output gradient that the input
  /// transforms read (`WinogradTiling.paddedCount`); zero them once.
  public let paddedInput: Int, paddedGradient: Int
  /// Transformed output gradients: the weight gradient's `e` or the input gradient's tiles.
  public let gradientTiles: Int
  /// Point products of the forward pass or the input gradient. (The weight gradient's
  /// are summed over a shard in `winogradWeightCount` Floats of their own.)
  public let products: Int

  /// For F(outputTile × outputTile, 3×3): 2, or a `WinogradScheme`'s.
  public init(_ s: Conv3x3Shape, images: Int = 1, outputTile: Int = 2) {
    let forward = WinogradTiling.forward(s, outputTile: outputTile)
    let backward = WinogradTiling.inputGradient(s, outputTile: outputTile)
    let points = forward.points
    /// The points of `tiles` tiles of `channels` channels per image, at `winogradPointStride`.
    func transformed(_ tiles: Int, _ channels: Int) -> Int {
      points * winogradPointStride(images * tiles * channels, points: points)
    }
    inputTiles = transformed(forward.tiles, s.inChannels)
    paddedInput = forward.paddedCount
    paddedGradient = backward.paddedCount
    gradientTiles = max(transformed(forward.tiles, s.outChannels), transformed(backward.tiles, s.outChannels))
    products = max(transformed(forward.tiles, s.outChannels), transformed(backward.tiles, s.inChannels))
  }

}

/// Forward: `output = bias + conv3x3(input, w)` through F(2×2, 3×3), then `relu` when
/// asked, with `transformedWeights` from `winogradTransformWeights`, for `images` images
/// (inputs and outputs one after another) in one GEMM per point. Leaves the transformed
/// input in `inputTiles` for `winogradConv3x3WeightGradient`. `paddedInput` is as in
/// `winogradTransformInput`; the scratch is `WinogradScratch(shape, images:)`'s. With
/// `normalizingInput`, the input is a BatchNorm's, normalised on the way in. Each
/// output's bits do not depend on `images`. Cost: 2 · 16 · images · tiles · in · out FLOP
/// (about `shape.flops` / 1.9 for 11×11 outputs) plus O(images · tiles · 16 · channels) adds.
@_spi(Kernels) public func winogradConv3x3Forward(
  input: UnsafePointer<Float>, images: Int = 1, shape s: Conv3x3Shape, transformedWeights: UnsafePointer<Float>,
  bias: UnsafePointer<Float>?, relu applyReLU: Bool, paddedInput: UnsafeMutablePointer<Float>,
  inputTiles: UnsafeMutablePointer<Float>, products: UnsafeMutablePointer<Float>,
  output: UnsafeMutablePointer<Float>, normalizingInput normalizing: FoldedBatchNorm? = nil
) {
  let tiling = WinogradTiling.forward(s)
  winogradTransformInput(
    input, images: images, tiling: tiling, padded: paddedInput, into: inputTiles, normalizing: normalizing)
  winogradMultiply(
    inputTiles, transformedWeights, tiles: images * tiling.tiles, inChannels: s.inChannels,
    outChannels: s.outChannels, into: products)
  winogradTransformOutput(
    products, images: images, tiling: tiling, channels: s.outChannels, bias: bias, relu: applyReLU, into: output)
}

/// Input gradient: the output gradient, padded by 2, correlated with the flipped filters
/// (`winogradFlipTransformedWeights`), for `images` images as in `winogradConv3x3Forward`.
/// Overwrites `inputGradient`. `paddedGradient` is as `padded` in `winogradTransformInput`.
/// Cost: 2 · 16 · images · tiles · in · out FLOP over the input's tiles plus the transforms.
@_spi(Kernels) public func winogradConv3x3InputGradient(
  outputGradient: UnsafePointer<Float>, images: Int = 1, shape s: Conv3x3Shape, flippedWeights: UnsafePointer<Float>,
  paddedGradient: UnsafeMutablePointer<Float>, gradientTiles: UnsafeMutablePointer<Float>,
  products: UnsafeMutablePointer<Float>, inputGradient: UnsafeMutablePointer<Float>
) {
  let tiling = WinogradTiling.inputGradient(s)
  winogradTransformInput(outputGradient, images: images, tiling: tiling, padded: paddedGradient, into: gradientTiles)
  winogradMultiply(
    gradientTiles, flippedWeights, tiles: images * tiling.tiles, inChannels: s.outChannels,
    outChannels: s.inChannels, into: products)
  winogradTransformOutput(
    products, images: images, tiling: tiling, channels: s.inChannels, bias: nil, into: inputGradient)
}

/// The share of `images` images (as in `winogradConv3x3Forward`) of the weight and bias
/// gradients: their weight products are added to `products` (Winograd domain;
/// `winogradAddWeightGradient` finishes them), or replace them without `accumulate`, and
/// `dB += Σ_p dOutput[p]` when `biasGradient` is given, image after image: the bits of
/// one call per image. `products` holds `winogradWeightCount(shape)` Floats.
/// Cost: 2 · 16 · images · tiles · in · out FLOP plus O(images · tiles · 16 · out).
@_spi(Kernels) public func winogradConv3x3WeightGradient(
  inputTiles: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, images: Int = 1, shape s: Conv3x3Shape,
  gradientTiles: UnsafeMutablePointer<Float>, products: UnsafeMutablePointer<Float>, accumulate: Bool,
  biasGradient: UnsafeMutablePointer<Float>?
) {
  winogradTransformOutputGradient(
    outputGradient, images: images, tiling: .forward(s), channels: s.outChannels, into: gradientTiles)
  winogradAccumulateWeightProducts(
    inputTiles: inputTiles, outputGradientTiles: gradientTiles, shape: s, images: images, products: products,
    accumulate: accumulate)
  if let biasGradient {
    addColumnSums(of: outputGradient, rows: images * s.outPixels, columns: s.outChannels, to: biasGradient)
  }
}
