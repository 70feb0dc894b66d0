@_spi(Kernels) import PTrain
import XCTest

/// The Winograd convolutions, F(2×2), F(4×4) and F(5×5), against the naive ones and finite differences.
final class WinogradTests: KernelTestCase {
  /// Several images through one GEMM per point give each image the bits of a pass of
  /// its own, in all three passes of F(2×2, 3×3), F(4×4, 3×3) and F(5×5, 3×3), and the weight
  /// products of one call per image added in order.
  func testWinogradOnSeveralImagesGivesTheBitsOfOneImageAtATime() {
    typealias Forward = (
      UnsafePointer<Float>, Int, Conv3x3Shape, UnsafePointer<Float>, UnsafePointer<Float>?, Bool,
      UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>,
      UnsafeMutablePointer<Float>, FoldedBatchNorm?
    ) -> Void
    typealias InputGradient = (
      UnsafePointer<Float>, Int, Conv3x3Shape, UnsafePointer<Float>, UnsafeMutablePointer<Float>,
      UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>
    ) -> Void
    typealias WeightGradient = (
      UnsafePointer<Float>, UnsafePointer<Float>, Int, Conv3x3Shape, UnsafeMutablePointer<Float>,
      UnsafeMutablePointer<Float>, Bool, UnsafeMutablePointer<Float>?
    ) -> Void
    /// The three passes of `scheme` in the F(2×2) kernels' argument order.
    func largeWinogradPasses<Scheme: WinogradScheme>(_ scheme: Scheme.Type) -> (
      tile: Int, Forward, InputGradient, WeightGradient
    ) {
      (
        Scheme.outputTile,
        {
          Scheme.conv3x3Forward(
            input: $0, images: $1, shape: $2, transformedWeights: $3, bias: $4, relu: $5, paddedInput: $6,
            inputTiles: $7, products: $8, output: $9, normalizingInput: $10)
        },
        {
          Scheme.conv3x3InputGradient(
            outputGradient: $0, images: $1, shape: $2, flippedWeights: $3, paddedGradient: $4, gradientTiles: $5,
            products: $6, inputGradient: $7)
        },
        {
          Scheme.conv3x3WeightGradient(
            inputTiles: $0, outputGradient: $1, images: $2, shape: $3, gradientTiles: $4, products: $5,
            accumulate: $6, biasGradient: $7)
        }
      )
    }
    let variants: [(tile: Int, Forward, InputGradient, WeightGradient)] = [
      (2, winogradConv3x3Forward, winogradConv3x3InputGradient, winogradConv3x3WeightGradient),
      largeWinogradPasses(WinogradF4.self), largeWinogradPasses(WinogradF5.self),
    ]
    let shapes = [
      Conv3x3Shape(height: 7, width: 6, inChannels: 16, outChannels: 32),
      Conv3x3Shape(height: 9, width: 9, inChannels: 32, outChannels: 16, padding: 1),
      Conv3x3Shape(height: 16, width: 16, inChannels: 32, outChannels: 32, padding: 1),
    ]
    let images = 4
    for (tile, forward, inputGradient, weightGradient) in variants {
      for s in shapes {
        let (inCount, outCount) = (s.height * s.width * s.inChannels, s.outPixels * s.outChannels)
        let weightCount = transformedWeightCount(s, outputTile: tile)
        let scratch = WinogradScratch(s, images: images, outputTile: tile)
        let (tilesCount, productsCount, gradientTilesCount, paddedCount, paddedGradientCount) = (
          scratch.inputTiles, scratch.products, scratch.gradientTiles, scratch.paddedInput, scratch.paddedGradient
        )
        let x = randomFloats(images * inCount, seed: 21)
        let dOut = randomFloats(images * outCount, seed: 22)
        let w = randomFloats(s.weightCount, seed: 23)
        let b = randomFloats(s.outChannels, seed: 24)
        /// Output, input gradient, weight products and bias gradient of images `range`,
        /// all in one call when `together`, else one call per image.
        func run(together: Bool) -> [[Float]] {
          withPointers([
            x, dOut, w, b, [Float](repeating: 0, count: weightCount), [Float](repeating: 0, count: weightCount),
            [Float](repeating: 0, count: tilesCount), [Float](repeating: 0, count: productsCount),
            [Float](repeating: 0, count: gradientTilesCount), [Float](repeating: 0, count: paddedCount),
            [Float](repeating: 0, count: paddedGradientCount), [Float](repeating: 0, count: images * outCount),
            [Float](repeating: 0, count: images * inCount), [Float](repeating: 0, count: weightCount),
            randomFloats(s.outChannels, seed: 25),
          ]) { p in
            transformWinogradWeights(p[2], shape: s, outputTile: tile, into: p[4], flipped: p[5])
            let groups = together ? [0..<images] : (0..<images).map { $0..<($0 + 1) }
            for group in groups {
              let n = group.count
              let first = group.lowerBound
              forward(
                p[0] + first * inCount, n, s, p[4], p[3], true, p[9], p[6], p[7], p[11] + first * outCount, nil)
              weightGradient(p[6], p[1] + first * outCount, n, s, p[8], p[13], first > 0, p[14])
              inputGradient(p[1] + first * outCount, n, s, p[5], p[10], p[8], p[7], p[12] + first * inCount)
            }
          }
        }
        let (together, alone) = (run(together: true), run(together: false))
        for (index, name) in [(11, "output"), (12, "input gradient"), (13, "weight products"), (14, "bias gradient")] {
          XCTAssertEqual(together[index], alone[index], "F(\(tile)x\(tile)) \(name) of \(images) images, \(s)")
        }
      }
    }
  }

  /// F(4×4) and F(5×5) point strides hold their points, in whole 64-byte lines, and put a
  /// tile's 36 or 49 points in as many different sets of a 64-set L1 cache (4 KB apart they
  /// all shared one); F(2×2) strides are packed.
  func testWinogradPointStridesSpreadATilesPointsOverTheCacheSets() {
    for count in [1, 16, 1024, 2048, 4096, 6272, 8192, 12_544, 16_384, 65_536] {
      for points in [WinogradF4.points, WinogradF5.points] {
        let stride = winogradPointStride(count, points: points)
        XCTAssert(stride >= count && stride % 16 == 0 && stride - count < 32, "\(count) -> \(stride)")
        let sets = Set((0..<points).map { point in point * stride * 4 / 64 % 64 })
        XCTAssertEqual(sets.count, points, "\(count) Floats per point")
      }
      XCTAssertEqual(winogradPointStride(count, points: winogradPoints), count)
    }
  }

  func testWinogradConvMatchesNaiveAndFiniteDifferences() {
    for s in winogradShapes {
      let x = randomFloats(s.height * s.width * s.inChannels, seed: 11)
      let w = randomFloats(s.weightCount, seed: 12)
      let b = randomFloats(s.outChannels, seed: 13)
      let dOut = randomFloats(s.outPixels * s.outChannels, seed: 14)
      let (out, inputTiles) = winogradForward(x, w, b, s)
      let naiveOut = Naive.convForward(x, w, b, s)
      assertClose(out, naiveOut, "Winograd forward \(s)")
      assertClose(winogradForward(x, w, b, s, relu: true).out, naiveOut.map { max($0, 0) }, "Winograd + ReLU \(s)")
      let naive = Naive.convBackward(x, w, dOut, s)
      let scratch = WinogradScratch(s)
      let previousW = randomFloats(w.count, seed: 15)
      let previousB = randomFloats(b.count, seed: 16)
      // Two images' shares summed in the Winograd domain, then transformed back once.
      let grads = withPointers([
        inputTiles, dOut, [Float](repeating: 0, count: scratch.gradientTiles),
        randomFloats(winogradWeightCount(s), seed: 18), previousW, previousB,
      ]) { p in
        // The first overwrites what `products` held; the second adds to it.
        for accumulate in [false, true] {
          winogradConv3x3WeightGradient(
            inputTiles: p[0], outputGradient: p[1], shape: s, gradientTiles: p[2], products: p[3],
            accumulate: accumulate, biasGradient: p[5])
        }
        winogradAddWeightGradient(products: p[3], shape: s, weightGradient: p[4])
      }
      assertClose(grads[4], zip(naive.dW, previousW).map { 2 * $0 + $1 }, "Winograd dW accumulates \(s)")
      assertClose(grads[5], zip(naive.dB, previousB).map { 2 * $0 + $1 }, "Winograd dB accumulates \(s)")
      let dX = withPointers([
        dOut, w, [Float](repeating: 0, count: winogradWeightCount(s)),
        [Float](repeating: 0, count: scratch.gradientTiles), [Float](repeating: 0, count: scratch.products),
        [Float](repeating: 7, count: x.count), [Float](repeating: 0, count: winogradWeightCount(s)),
        [Float](repeating: 0, count: scratch.paddedGradient), randomFloats(dOut.count, seed: 17),
      ]) { p in
        winogradTransformWeights(p[1], shape: s, into: p[6])
        winogradFlipTransformedWeights(p[6], shape: s, into: p[2])
        // Twice through the same padded copy: the second result must not see the first.
        for gradient in [p[8], p[0]] {
          winogradConv3x3InputGradient(
            outputGradient: gradient, shape: s, flippedWeights: p[2], paddedGradient: p[7], gradientTiles: p[3],
            products: p[4], inputGradient: p[5])
        }
      }[5]
      assertClose(dX, naive.dX, "Winograd dX \(s)")
      let loss = { (x: [Float], w: [Float]) in self.dot(self.winogradForward(x, w, b, s).out, dOut) }
      let sample = Array(stride(from: 0, to: w.count, by: max(w.count / 37, 1)))
      assertClose(
        sample.map { (grads[4][$0] - previousW[$0]) / 2 }, numericGradient(at: w, indices: sample) { loss(x, $0) },
        tolerance: 1e-2,
        "Winograd dW finite differences \(s)")
      let xSample = Array(stride(from: 0, to: x.count, by: max(x.count / 41, 1)))
      assertClose(
        xSample.map { dX[$0] }, numericGradient(at: x, indices: xSample) { loss($0, w) }, tolerance: 1e-2,
        "Winograd dX finite differences \(s)")
    }
  }

  /// F(4×4, 3×3) and F(5×5, 3×3) against the plain convolution: the forward pass, the
  /// weight and bias gradients of two calls summed in the Winograd domain, and the input
  /// gradient, on a padded map the tiles fit (F(5×5)) or overhang (F(4×4)), and on an
  /// unpadded one whose tiles overhang it in both.
  func testLargeWinogradConvMatchesNaive() {
    checkLargeWinogradAgainstNaive(WinogradF4.self)
    checkLargeWinogradAgainstNaive(WinogradF5.self)
  }

  func checkLargeWinogradAgainstNaive<Scheme: WinogradScheme>(_ scheme: Scheme.Type) {
    for s in [
      Conv3x3Shape(height: 14, width: 14, inChannels: 16, outChannels: 32, padding: 1),
      Conv3x3Shape(height: 9, width: 11, inChannels: 32, outChannels: 16),
    ] {
      let x = randomFloats(s.height * s.width * s.inChannels, seed: 31)
      let w = randomFloats(s.weightCount, seed: 32)
      let b = randomFloats(s.outChannels, seed: 33)
      let dOut = randomFloats(s.outPixels * s.outChannels, seed: 34)
      let scratch = WinogradScratch(s, outputTile: Scheme.outputTile)
      let zeros = { (count: Int) in [Float](repeating: 0, count: count) }
      let r = withPointers([
        x, w, b, dOut, zeros(Scheme.weightCount(s)), zeros(Scheme.weightCount(s)), zeros(scratch.paddedInput),
        zeros(scratch.inputTiles), zeros(scratch.products), zeros(s.outPixels * s.outChannels),
        zeros(scratch.gradientTiles), zeros(Scheme.weightCount(s)), zeros(s.weightCount), zeros(s.outChannels),
        zeros(scratch.paddedGradient), zeros(x.count),
      ]) { p in
        Scheme.transformWeights(p[1], shape: s, into: p[4], flipped: p[5])
        Scheme.conv3x3Forward(
          input: p[0], shape: s, transformedWeights: p[4], bias: p[2], relu: false, paddedInput: p[6],
          inputTiles: p[7], products: p[8], output: p[9])
        for accumulate in [false, true] {
          Scheme.conv3x3WeightGradient(
            inputTiles: p[7], outputGradient: p[3], shape: s, gradientTiles: p[10], products: p[11],
            accumulate: accumulate, biasGradient: p[13])
        }
        Scheme.addWeightGradient(products: p[11], shape: s, weightGradient: p[12])
        Scheme.conv3x3InputGradient(
          outputGradient: p[3], shape: s, flippedWeights: p[5], paddedGradient: p[14], gradientTiles: p[10],
          products: p[8], inputGradient: p[15])
      }
      // The plain convolution (which has no padding) over the input with its zeros in place.
      let (p, c) = (s.padding, s.inChannels)
      let unpadded = Conv3x3Shape(
        height: s.height + 2 * p, width: s.width + 2 * p, inChannels: c, outChannels: s.outChannels)
      var xPadded = [Float](repeating: 0, count: unpadded.height * unpadded.width * c)
      for y in 0..<s.height {
        let start: Int = ((y + p) * unpadded.width + p) * c
        for i in 0..<(s.width * c) { xPadded[start + i] = x[y * s.width * c + i] }
      }
      let naive = Naive.convBackward(xPadded, w, dOut, unpadded)
      var naiveDX: [Float] = []
      for y in 0..<s.height {
        let start: Int = ((y + p) * unpadded.width + p) * c
        naiveDX += naive.dX[start..<(start + s.width * c)]
      }
      let name = "F(\(Scheme.outputTile)x\(Scheme.outputTile)) \(s)"
      assertClose(r[9], Naive.convForward(xPadded, w, b, unpadded), "forward " + name)
      assertClose(r[12], naive.dW.map { 2 * $0 }, "dW " + name)
      assertClose(r[13], naive.dB.map { 2 * $0 }, "dB " + name)
      assertClose(r[15], naiveDX, "dX " + name)
    }
  }

  /// `winogradWeightCount(shape)` for F(2×2, 3×3), or the scheme's of `outputTile`.
  func transformedWeightCount(_ s: Conv3x3Shape, outputTile: Int) -> Int {
    switch outputTile {
    case 4: WinogradF4.weightCount(s)
    case 5: WinogradF5.weightCount(s)
    default: winogradWeightCount(s)
    }
  }

  /// The forward and flipped filters of F(`outputTile` × `outputTile`, 3×3).
  func transformWinogradWeights(
    _ w: UnsafePointer<Float>, shape s: Conv3x3Shape, outputTile: Int, into v: UnsafeMutablePointer<Float>,
    flipped: UnsafeMutablePointer<Float>
  ) {
    switch outputTile {
    case 4: WinogradF4.transformWeights(w, shape: s, into: v, flipped: flipped)
    case 5: WinogradF5.transformWeights(w, shape: s, into: v, flipped: flipped)
    default:
      winogradTransformWeights(w, shape: s, into: v)
      winogradFlipTransformedWeights(v, shape: s, into: flipped)
    }
  }

  /// An F(4×4, 3×3) or F(5×5, 3×3) output transform's work on each finished row of tiles gives the bits of
  /// the separate passes over the stored map: the BatchNorm input sums of the forward
  /// output (`batchNormAddInputSums`), and, on the input gradient, the ReLU's backward
  /// through the BatchNorm below and that BatchNorm's gradient sums; on two images of a
  /// map whose tiles overhang it, with and without the ReLU.
  func testWinogradOutputRowsMatchTheirSeparatePasses() {
    checkOutputRows(WinogradF4.self)
    checkOutputRows(WinogradF5.self)
  }

  func checkOutputRows<Scheme: WinogradScheme>(_ scheme: Scheme.Type) {
    let s = Conv3x3Shape(height: 9, width: 7, inChannels: 32, outChannels: 16, padding: 1)
    let images = 2
    let scratch = WinogradScratch(s, images: images, outputTile: Scheme.outputTile)
    let (inCount, outCount) = (s.height * s.width * s.inChannels, s.outPixels * s.outChannels)
    let weightCount = Scheme.weightCount(s)
    let zeros = { (count: Int) in [Float](repeating: 0, count: count) }
    for relu in [false, true] {
      let r = withPointers([
        randomFloats(images * inCount, seed: 91), randomFloats(s.weightCount, seed: 92), zeros(weightCount),
        zeros(weightCount), zeros(scratch.inputTiles), zeros(scratch.products), zeros(scratch.paddedInput),
        zeros(images * outCount), randomFloats(s.outChannels, seed: 93), [],
        randomFloats(images * outCount, seed: 94), zeros(scratch.paddedGradient), zeros(scratch.gradientTiles),
        zeros(images * inCount), zeros(images * inCount), randomFloats(s.inChannels, seed: 95),
        randomFloats(s.inChannels, seed: 96), randomFloats(s.inChannels, seed: 97).map { 1 + abs($0) },
        randomFloats(2 * s.inChannels, seed: 98), randomFloats(2 * s.inChannels, seed: 98),
      ]) { p in
        Scheme.transformWeights(p[1], shape: s, into: p[2], flipped: p[3])
        // Forward: the input sums of its output, fused and in a pass of their own.
        var fused = [Double](repeating: 0, count: 2 * s.outChannels)
        fused.withUnsafeMutableBufferPointer { sums in
          Scheme.conv3x3Forward(
            input: p[0], images: images, shape: s, transformedWeights: p[2], bias: nil, relu: false,
            paddedInput: p[6], inputTiles: p[4], products: p[5], output: p[7],
            addingSums: BatchNormInputSums(shift: p[8], sums: sums.baseAddress!))
        }
        var separate = [Double](repeating: 0, count: 2 * s.outChannels)
        for image in 0..<images {
          batchNormAddInputSums(
            p[7] + image * outCount, pixels: s.outPixels, channels: s.outChannels, shift: p[8], sums: &separate)
        }
        XCTAssertEqual(fused, separate, "input sums")
        XCTAssert(separate.allSatisfy { $0 != 0 }, "input sums added")
        // Backward: the input gradient through the BatchNorm below (input p[0], folded
        // scale p[15] and offset p[16], mean p[16], inverse deviation p[17]), with sums
        // p[18] (fused) and p[19] (separate) from the same start.
        let folded: (scale: UnsafePointer<Float>, offset: UnsafePointer<Float>)? =
          relu ? (UnsafePointer(p[15]), UnsafePointer(p[16])) : nil
        Scheme.conv3x3InputGradient(
          outputGradient: p[10], images: images, shape: s, flippedWeights: p[3], paddedGradient: p[11],
          gradientTiles: p[12], products: p[5], inputGradient: p[13],
          throughBatchNorm: BatchNormGradientRows(
            input: p[0], relu: folded, mean: p[16], inverseDeviation: p[17], sums: p[18]))
        Scheme.conv3x3InputGradient(
          outputGradient: p[10], images: images, shape: s, flippedWeights: p[3], paddedGradient: p[11],
          gradientTiles: p[12], products: p[5], inputGradient: p[14])
        for image in 0..<images {
          let (x, g) = (p[0] + image * inCount, p[14] + image * inCount)
          if relu {
            reluBackwardThroughBatchNorm(
              g, input: x, pixels: s.height * s.width, channels: s.inChannels, scale: p[15], offset: p[16])
          }
          batchNormAddGradientSums(
            outputGradient: g, input: x, pixels: s.height * s.width, channels: s.inChannels, mean: p[16],
            inverseDeviation: p[17], sums: p[19])
        }
      }
      XCTAssertEqual(r[13], r[14], "F(\(Scheme.outputTile)) input gradient, relu \(relu)")
      XCTAssertEqual(r[18], r[19], "F(\(Scheme.outputTile)) gradient sums, relu \(relu)")
      XCTAssertNotEqual(r[18], randomFloats(2 * s.inChannels, seed: 98), "gradient sums added")
      XCTAssert(!relu || r[13].contains(0), "some gradients masked")
    }
  }
}
