import Benchmark
@_spi(Kernels) import PTrain

// One benchmark per conv2 kernel (the model's hot spot) and per cheap kernel, each with
// a GFLOP/s metric computed from the kernel's FLOP count and the measured wall time.

/// Floats filled with a fixed pattern, never freed (benchmarks run for the process).
func buffer(_ count: Int) -> UnsafeMutablePointer<Float> {
  let pointer = UnsafeMutablePointer<Float>.allocate(capacity: count)
  for i in 0..<count { pointer[i] = Float(i % 17) * 0.01 - 0.08 }
  return pointer
}

let gflops = BenchmarkMetric.custom("GFLOP/s", polarity: .prefersLarger, useScalingFactor: false)

/// Registers a benchmark that runs `body` `repeats` times per iteration and reports GFLOP/s.
func kernel(_ name: String, flops: Int, repeats: Int = 100, _ body: @escaping () -> Void) {
  Benchmark(
    name, configuration: .init(metrics: [.wallClock, gflops], maxDuration: .seconds(2), maxIterations: 1000)
  ) { benchmark in
    let start = ContinuousClock.now
    for _ in benchmark.scaledIterations {
      for _ in 0..<repeats { body() }
    }
    let elapsed = ContinuousClock.now - start
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    let total = Double(flops) * Double(repeats) * Double(benchmark.scaledIterations.count)
    benchmark.measurement(gflops, Int(total / seconds / 1e9))
  }
}

let benchmarks: @Sendable () -> Void = {
  // conv2 both ways on one image: im2col + GEMM, and Winograd F(2×2, 3×3). (The engine now
  // runs conv2 in F(4×4, 3×3) on a shard's 4 images at once; `ptrain bench` measures that.)
  // The GFLOP/s of both count direct-convolution FLOP, so Winograd's are "effective" ones.
  let conv = Conv3x3Shape(height: 13, width: 13, inChannels: 32, outChannels: 64)  // mnist-cnn's conv2
  let input = buffer(conv.height * conv.width * conv.inChannels)
  let weights = buffer(conv.weightCount)
  let bias = buffer(conv.outChannels)
  let columns = buffer(conv.outPixels * conv.patch)
  let output = buffer(conv.outPixels * conv.outChannels)
  let weightGradient = buffer(conv.weightCount)
  let biasGradient = buffer(conv.outChannels)
  let inputGradient = buffer(conv.height * conv.width * conv.inChannels)
  let scratch = WinogradScratch(conv)
  let filters = buffer(winogradWeightCount(conv))
  let flippedFilters = buffer(winogradWeightCount(conv))
  let inputTiles = buffer(scratch.inputTiles)
  let gradientTiles = buffer(scratch.gradientTiles)
  let products = buffer(scratch.products)
  let paddedInput = buffer(scratch.paddedInput)
  let paddedGradient = buffer(scratch.paddedGradient)
  paddedInput.update(repeating: 0, count: scratch.paddedInput)
  paddedGradient.update(repeating: 0, count: scratch.paddedGradient)
  winogradTransformWeights(weights, shape: conv, into: filters)
  winogradFlipTransformedWeights(filters, shape: conv, into: flippedFilters)

  kernel("conv2 forward (im2col)", flops: conv.flops) {
    conv3x3Forward(input: input, shape: conv, weights: weights, bias: bias, columns: columns, output: output)
  }
  kernel("conv2 weight gradient (im2col)", flops: conv.flops) {
    conv3x3WeightGradient(
      columns: columns, outputGradient: output, shape: conv, weightGradient: weightGradient,
      biasGradient: biasGradient)
  }
  kernel("conv2 forward (Winograd)", flops: conv.flops) {
    winogradConv3x3Forward(
      input: input, shape: conv, transformedWeights: filters, bias: bias, relu: true,
      paddedInput: paddedInput, inputTiles: inputTiles, products: products, output: output)
  }
  let weightProducts = buffer(winogradWeightCount(conv))
  kernel("conv2 weight gradient (Winograd)", flops: conv.flops) {
    winogradConv3x3WeightGradient(
      inputTiles: inputTiles, outputGradient: output, shape: conv, gradientTiles: gradientTiles,
      products: weightProducts, accumulate: false, biasGradient: biasGradient)
    winogradAddWeightGradient(products: weightProducts, shape: conv, weightGradient: weightGradient)
  }
  kernel("conv2 input gradient (Winograd)", flops: conv.flops) {
    winogradConv3x3InputGradient(
      outputGradient: output, shape: conv, flippedWeights: flippedFilters,
      paddedGradient: paddedGradient, gradientTiles: gradientTiles, products: products, inputGradient: inputGradient)
  }
  let pooled = buffer(5 * 5 * 64)
  kernel("max-pool 11×11×64 forward", flops: 3 * 5 * 5 * 64, repeats: 1000) {
    maxPool2x2Forward(output, height: 11, width: 11, channels: 64, output: pooled)
  }
  let logits = buffer(10)
  let dense = buffer(10 * 1600)
  kernel("dense 1600→10 forward", flops: 2 * 1600 * 10, repeats: 1000) {
    denseForward(input: inputGradient, inputs: 1600, weights: dense, bias: bias, outputs: 10, output: logits)
  }
}
