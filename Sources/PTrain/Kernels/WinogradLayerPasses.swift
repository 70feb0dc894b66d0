/// A convolution layer's passes on any Winograd scheme: its input transform, GEMMs and
/// output transform, forward, for the input gradient and for the weight gradient.
extension WinogradScheme {
  /// Forward: `output = bias + conv3x3(input, w)`, then `relu` when asked, with
  /// `transformedWeights` from `transformWeights`. Leaves the transformed input in
  /// `inputTiles` for the weight gradient. `images` images go through one GEMM per point,
  /// and `normalizingInput` applies, as in `winogradConv3x3Forward`; `addingSums` adds
  /// each image's BatchNorm sums of the output (`transformOutput`); the scratch is
  /// `WinogradScratch(shape, images:, outputTile: outputTile)`'s.
  /// Cost: 2 · points · images · tiles · in · out FLOP plus O(images · tiles · points · channels) adds.
  public static func conv3x3Forward(
    input: UnsafePointer<Float>, images: Int = 1, shape s: Conv3x3Shape, transformedWeights: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, relu applyReLU: Bool, paddedInput: UnsafeMutablePointer<Float>,
    inputTiles: UnsafeMutablePointer<Float>, products: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>,
    normalizingInput normalizing: FoldedBatchNorm? = nil, addingSums: BatchNormInputSums? = nil
  ) {
    let tiling = forwardTiling(s)
    transformInput(
      input, images: images, tiling: tiling, padded: paddedInput, into: inputTiles, normalizing: normalizing)
    winogradMultiply(
      inputTiles, transformedWeights, tiles: images * tiling.tiles, inChannels: s.inChannels,
      outChannels: s.outChannels, points: points, into: products)
    if let addingSums {
      transformOutput(
        products, images: images, tiling: tiling, channels: s.outChannels, bias: bias, relu: applyReLU, into: output,
        rows: addingSums)
    } else {
      transformOutput(
        products, images: images, tiling: tiling, channels: s.outChannels, bias: bias, relu: applyReLU, into: output,
        rows: WinogradOutputRowsNone())
    }
  }

  /// Input gradient: the output gradient, padded by 2 minus the convolution's padding,
  /// correlated with the turned filters (`transformWeights`' `flipped`). Overwrites
  /// `inputGradient`, for `images` images as in `conv3x3Forward`; with
  /// `throughBatchNorm`, takes it through the ReLU of the BatchNorm below and adds that
  /// BatchNorm's gradient sums (`BatchNormGradientRows`). With `made`, the output gradient
  /// is the one it makes (the input gradient of the BatchNorm above), `outputGradient` is
  /// not read, and `paddedGradient` holds a copy per image, left for the weight gradient.
  /// Cost: 2 · points · images · tiles · in · out FLOP plus the transforms.
  public static func conv3x3InputGradient(
    outputGradient: UnsafePointer<Float>, images: Int = 1, shape s: Conv3x3Shape, flippedWeights: UnsafePointer<Float>,
    paddedGradient: UnsafeMutablePointer<Float>, gradientTiles: UnsafeMutablePointer<Float>,
    products: UnsafeMutablePointer<Float>, inputGradient: UnsafeMutablePointer<Float>,
    throughBatchNorm: BatchNormGradientRows? = nil, made: BatchNormInputGradient? = nil
  ) {
    let tiling = WinogradTiling.inputGradient(s, outputTile: outputTile)
    transformInput(
      outputGradient, images: images, tiling: tiling, padded: paddedGradient, into: gradientTiles, made: made)
    winogradMultiply(
      gradientTiles, flippedWeights, tiles: images * tiling.tiles, inChannels: s.outChannels,
      outChannels: s.inChannels, points: points, into: products)
    if let throughBatchNorm {
      transformOutput(
        products, images: images, tiling: tiling, channels: s.inChannels, bias: nil, into: inputGradient,
        rows: throughBatchNorm)
    } else {
      transformOutput(
        products, images: images, tiling: tiling, channels: s.inChannels, bias: nil, into: inputGradient,
        rows: WinogradOutputRowsNone())
    }
  }

  /// Some images' share of the weight and bias gradients, as `winogradConv3x3WeightGradient`
  /// for F(2×2, 3×3): their weight products are added to `products` (or replace them without
  /// `accumulate`; `addWeightGradient` finishes them), and `dB += Σ_p dOutput[p]` when
  /// `biasGradient` is given; `images` images give the bits of one call per image. With
  /// `finishing`, these are the shard's last images: the products (`products` so far, when
  /// `accumulate`) go straight into the weight gradient instead, through a block
  /// (`finishWeightGradient`), with the same bits. With `madeIn`, the output gradient is
  /// read from the copies `conv3x3InputGradient` made there (`WinogradGradientSource`), and there
  /// is no bias gradient.
  /// Cost: 2 · points · images · tiles · in · out FLOP plus O(images · tiles · points · out).
  public static func conv3x3WeightGradient(
    inputTiles: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, images: Int = 1, shape s: Conv3x3Shape,
    gradientTiles: UnsafeMutablePointer<Float>, products: UnsafeMutablePointer<Float>, accumulate: Bool,
    biasGradient: UnsafeMutablePointer<Float>?,
    finishing: (block: UnsafeMutablePointer<Float>, weightGradient: UnsafeMutablePointer<Float>)? = nil,
    madeIn paddedGradient: UnsafePointer<Float>? = nil
  ) {
    let tiling = forwardTiling(s)
    if let paddedGradient {
      precondition(biasGradient == nil, "conv3x3WeightGradient: a bias gradient needs the stored output gradient")
      transformOutputGradient(
        WinogradGradientSource(padded: paddedGradient, tiling: .inputGradient(s, outputTile: outputTile)),
        images: images,
        tiling: tiling, channels: s.outChannels, into: gradientTiles)
    } else {
      transformOutputGradient(
        WinogradGradientSource(stored: outputGradient, height: s.outHeight, width: s.outWidth, channels: s.outChannels),
        images: images, tiling: tiling, channels: s.outChannels, into: gradientTiles)
    }
    if let finishing {
      finishWeightGradient(
        inputTiles: inputTiles, outputGradientTiles: gradientTiles, shape: s, images: images,
        products: accumulate ? products : nil, block: finishing.block, weightGradient: finishing.weightGradient)
    } else {
      winogradAccumulateWeightProducts(
        inputTiles: inputTiles, outputGradientTiles: gradientTiles, shape: s, outputTile: outputTile, images: images,
        products: products, accumulate: accumulate)
    }
    if let biasGradient {
      addColumnSums(of: outputGradient, rows: images * s.outPixels, columns: s.outChannels, to: biasGradient)
    }
  }
}
