@_spi(Kernels) import PTrain
import XCTest

/// Each kernel against its naive reference, and its gradient against central finite
/// differences of the kernel's own forward pass.
final class KernelTests: XCTestCase {
  /// Central differences of `f` at `x` for the given indices.
  func numericGradient(
    at x: [Float], indices: [Int], epsilon: Float = 1e-2, _ f: ([Float]) -> Double
  ) -> [Float] {
    indices.map { i in
      var plus = x
      var minus = x
      plus[i] += epsilon
      minus[i] -= epsilon
      return Float((f(plus) - f(minus)) / Double(2 * epsilon))
    }
  }

  func dot(_ a: [Float], _ b: [Float]) -> Double {
    zip(a, b).reduce(0) { $0 + Double($1.0) * Double($1.1) }
  }

  let smallConv = Conv3x3Shape(height: 6, width: 5, inChannels: 16, outChannels: 32)
  let firstLayerConv = Conv3x3Shape(height: 7, width: 6, inChannels: 1, outChannels: 32)

  func convForward(_ x: [Float], _ w: [Float], _ b: [Float], _ s: Conv3x3Shape) -> (out: [Float], columns: [Float]) {
    let r = withPointers([
      x, w, b, [Float](repeating: 0, count: s.outPixels * s.patch),
      [Float](repeating: 0, count: s.outPixels * s.outChannels),
    ]) { p in
      conv3x3Forward(input: p[0], shape: s, weights: p[1], bias: p[2], columns: p[3], output: p[4])
    }
    return (r[4], r[3])
  }

  func testGemmTilesCoverRowsWithTheFewestRowsComputedTallestFirst() {
    let (large, middle, small) = gemmTileRowChoices()
    for m in 1...200 {
      var heights: [Int] = []
      var remaining = m
      while remaining > 0 {
        heights.append(gemmNextTileRows(remaining: remaining))
        remaining -= heights.last!
      }
      XCTAssert(heights.allSatisfy { [large, middle, small].contains($0) }, "m = \(m): \(heights)")
      XCTAssertEqual(heights, heights.sorted(by: >), "m = \(m): tallest first")
      // ⌈m / large⌉ tiles at least, each of at least `small` rows: m itself where they fit.
      XCTAssertEqual(heights.reduce(0, +), max(m, (m + large - 1) / large * small), "m = \(m): \(heights)")
      XCTAssertEqual(heights.count, (m + large - 1) / large, "m = \(m): \(heights)")
    }
  }

  func testGemmMatchesNaiveInAllStrideModes() {
    // Row counts that pick each tile height and leave every kind of last tile; n = 48 runs
    // both the 32- and the 16-column loops.
    for m in [1, 5, 7, 9, 12, 13, 32, 36, 49] {
      let n = 48
      let k = 5
      let a = randomFloats(m * k, seed: 1)
      let b = randomFloats(k * n, seed: 2)
      let c0 = randomFloats(m * n, seed: 3)
      let expected = Naive.gemm(a, b, m: m, n: n, k: k)
      let plain = withPointers([a, b, c0]) { p in
        gemm(
          m: m, n: n, k: k, a: p[0], aRowStride: k, aColStride: 1, b: p[1], ldb: n, c: p[2], ldc: n, accumulate: false)
      }[2]
      assertClose(plain, expected, "A·B, m = \(m)")
      let accumulated = withPointers([a, b, c0]) { p in
        gemm(
          m: m, n: n, k: k, a: p[0], aRowStride: k, aColStride: 1, b: p[1], ldb: n, c: p[2], ldc: n, accumulate: true)
      }[2]
      assertClose(accumulated, zip(expected, c0).map(+), "C + A·B, m = \(m)")
      let aT = Naive.transpose(a, rows: m, columns: k)
      let transposed = withPointers([aT, b, c0]) { p in
        gemm(
          m: m, n: n, k: k, a: p[0], aRowStride: 1, aColStride: m, b: p[1], ldb: n, c: p[2], ldc: n, accumulate: false)
      }[2]
      assertClose(transposed, expected, "Aᵀ read through strides, m = \(m)")
      // The bits of a row do not depend on the tile it falls in.
      let lastRow = withPointers([Array(a[((m - 1) * k)...]), b, Array(c0[((m - 1) * n)...])]) { p in
        gemm(
          m: 1, n: n, k: k, a: p[0], aRowStride: k, aColStride: 1, b: p[1], ldb: n, c: p[2], ldc: n, accumulate: true)
      }[2]
      XCTAssertEqual(lastRow, Array(accumulated[((m - 1) * n)...]), "last row alone, m = \(m)")
    }
  }

  func testConvForwardMatchesNaive() {
    for s in [smallConv, firstLayerConv] {
      let x = randomFloats(s.height * s.width * s.inChannels, seed: 4)
      let w = randomFloats(s.weightCount, seed: 5)
      let b = randomFloats(s.outChannels, seed: 6)
      assertClose(convForward(x, w, b, s).out, Naive.convForward(x, w, b, s), "conv forward \(s)")
    }
  }

  func testConvGradientsMatchNaiveAndFiniteDifferences() {
    for s in [smallConv, firstLayerConv] {
      let x = randomFloats(s.height * s.width * s.inChannels, seed: 7)
      let w = randomFloats(s.weightCount, seed: 8)
      let b = randomFloats(s.outChannels, seed: 9)
      let dOut = randomFloats(s.outPixels * s.outChannels, seed: 10)
      let columns = convForward(x, w, b, s).columns
      let zerosW = [Float](repeating: 0, count: w.count)
      let zerosB = [Float](repeating: 0, count: b.count)
      let grads = withPointers([columns, dOut, zerosW, zerosB]) { p in
        conv3x3WeightGradient(columns: p[0], outputGradient: p[1], shape: s, weightGradient: p[2], biasGradient: p[3])
      }
      let naive = Naive.convBackward(x, w, dOut, s)
      assertClose(grads[2], naive.dW, "dW \(s)")
      assertClose(grads[3], naive.dB, "dB \(s)")
      let sample = Array(stride(from: 0, to: w.count, by: max(w.count / 37, 1)))
      assertClose(
        sample.map { grads[2][$0] },
        numericGradient(at: w, indices: sample) { self.dot(self.convForward(x, $0, b, s).out, dOut) }, tolerance: 1e-2,
        "dW finite differences \(s)")
      assertClose(
        grads[3],
        numericGradient(at: b, indices: Array(0..<b.count)) { self.dot(self.convForward(x, w, $0, s).out, dOut) },
        tolerance: 1e-2, "dB finite differences \(s)")
    }
  }

  /// conv1's path: direct one-channel convolution, bit-identical to im2col + GEMM.
  func testOneChannelConvMatchesIm2colBitForBit() {
    let s = firstLayerConv
    let x = randomFloats(s.height * s.width, seed: 21)
    let w = randomFloats(s.weightCount, seed: 22)
    let b = randomFloats(s.outChannels, seed: 23)
    let dOut = randomFloats(s.outPixels * s.outChannels, seed: 24)
    let (expected, columns) = convForward(x, w, b, s)
    func direct(relu: Bool) -> [Float] {
      withPointers([x, w, b, [Float](repeating: 9, count: expected.count)]) { p in
        conv3x3OneChannelForward(input: p[0], shape: s, weights: p[1], bias: p[2], relu: relu, output: p[3])
      }[3]
    }
    let out = direct(relu: false)
    XCTAssertEqual(out, expected, "forward")
    XCTAssertEqual(direct(relu: true), expected.map { max($0, 0) }, "forward + ReLU")
    assertClose(out, Naive.convForward(x, w, b, s), "forward against naive")
    let previousW = randomFloats(w.count, seed: 25)
    let previousB = randomFloats(b.count, seed: 26)
    let viaGemm = withPointers([columns, dOut, previousW, previousB]) { p in
      conv3x3WeightGradient(columns: p[0], outputGradient: p[1], shape: s, weightGradient: p[2], biasGradient: p[3])
    }
    let direct = withPointers([x, dOut, previousW, previousB]) { p in
      conv3x3OneChannelWeightGradient(
        input: p[0], outputGradient: p[1], shape: s, weightGradient: p[2], biasGradient: p[3])
    }
    XCTAssertEqual(direct[2], viaGemm[2], "dW")
    XCTAssertEqual(direct[3], viaGemm[3], "dB")
    let naive = Naive.convBackward(x, w, dOut, s)
    assertClose(direct[2], zip(naive.dW, previousW).map(+), "dW against naive")
  }

  /// conv2's path, Winograd F(2×2, 3×3), on odd and even output sizes.
  var winogradShapes: [Conv3x3Shape] {
    [smallConv, Conv3x3Shape(height: 7, width: 8, inChannels: 16, outChannels: 32)]
  }

  func winogradForward(_ x: [Float], _ w: [Float], _ b: [Float], _ s: Conv3x3Shape, relu: Bool = false)
    -> (out: [Float], inputTiles: [Float])
  {
    let scratch = WinogradScratch(s)
    let r = withPointers([
      x, w, b, [Float](repeating: 0, count: winogradWeightCount(s)),
      [Float](repeating: 0, count: scratch.inputTiles), [Float](repeating: 0, count: scratch.products),
      [Float](repeating: 0, count: s.outPixels * s.outChannels), [Float](repeating: 0, count: scratch.paddedInput),
    ]) { p in
      winogradTransformWeights(p[1], shape: s, into: p[3])
      winogradConv3x3Forward(
        input: p[0], shape: s, transformedWeights: p[3], bias: p[2], relu: relu, paddedInput: p[7], inputTiles: p[4],
        products: p[5], output: p[6])
    }
    return (r[6], r[4])
  }

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

  /// A shard's F(4×4, 3×3) and F(5×5, 3×3) weight gradients finished as its last products are made gives
  /// the bits of the products summed, stored and transformed back: for a shard of one part
  /// (through the block) and of two (added to the first part's products), with 32 and 48
  /// input channels (blocks of 8 rows with AVX-512; of 4 and 6 with AVX2).
  func testLargeWinogradFinishedWeightGradientMatchesStoredProducts() {
    checkFinishedWeightGradient(WinogradF4.self)
    checkFinishedWeightGradient(WinogradF5.self)
  }

  func checkFinishedWeightGradient<Scheme: WinogradScheme>(_ scheme: Scheme.Type) {
    for s in [
      Conv3x3Shape(height: 8, width: 8, inChannels: 32, outChannels: 16, padding: 1),
      Conv3x3Shape(height: 6, width: 7, inChannels: 48, outChannels: 32),
    ] {
      let tiles = WinogradTiling.forward(s, outputTile: Scheme.outputTile).tiles
      /// Random tiles of `images` images with `channels` channels, laid out at the point stride.
      func randomTiles(_ images: Int, _ channels: Int, seed: UInt64) -> [Float] {
        randomFloats(
          Scheme.points * winogradPointStride(images * tiles * channels, points: Scheme.points), seed: seed)
      }
      let (u1, e1) = (randomTiles(1, s.inChannels, seed: 61), randomTiles(1, s.outChannels, seed: 62))
      let (u2, e2) = (randomTiles(2, s.inChannels, seed: 63), randomTiles(2, s.outChannels, seed: 64))
      let start = randomFloats(s.weightCount, seed: 65)
      for parts in [1, 2] {
        /// dW after the shard's parts, the last one finished in place when `finishing`.
        func weightGradient(finishing: Bool) -> [Float] {
          withPointers([
            u1, e1, u2, e2, start, [Float](repeating: 0, count: Scheme.weightCount(s)),
            [Float](repeating: 0, count: Scheme.weightBlockCount(s)),
          ]) { p in
            if parts == 2 {
              winogradAccumulateWeightProducts(
                inputTiles: p[0], outputGradientTiles: p[1], shape: s, outputTile: Scheme.outputTile, products: p[5],
                accumulate: false)
            }
            if finishing {
              Scheme.finishWeightGradient(
                inputTiles: p[2], outputGradientTiles: p[3], shape: s, images: 2, products: parts == 2 ? p[5] : nil,
                block: p[6], weightGradient: p[4])
            } else {
              winogradAccumulateWeightProducts(
                inputTiles: p[2], outputGradientTiles: p[3], shape: s, outputTile: Scheme.outputTile, images: 2,
                products: p[5],
                accumulate: parts == 2)
              Scheme.addWeightGradient(products: p[5], shape: s, weightGradient: p[4])
            }
          }[4]
        }
        XCTAssertEqual(
          weightGradient(finishing: true), weightGradient(finishing: false),
          "F(\(Scheme.outputTile)), \(parts) part(s), \(s)")
      }
    }
  }

  /// Filters transformed by slices of the input channels, as a trainer's workers fill
  /// them (slices of 9 or 10 channels), give the bits of one call; each flipped
  /// filter is the forward transform of the filter turned by 180° with in and out swapped.
  func testWinogradFiltersBySlicesMatchOneCallAndTheTurnedFilters() {
    for (tile, s) in [
      (4, Conv3x3Shape(height: 8, width: 8, inChannels: 48, outChannels: 32)),
      (5, Conv3x3Shape(height: 8, width: 8, inChannels: 48, outChannels: 16)),
      (2, Conv3x3Shape(height: 8, width: 8, inChannels: 32, outChannels: 16)),
    ] {
      let weights = randomFloats(9 * s.inChannels * s.outChannels, seed: 45)
      let whole = WinogradFilters(shape: s, outputTile: tile, keepsFlipped: true)
      let sliced = WinogradFilters(shape: s, outputTile: tile, keepsFlipped: true)
      weights.withUnsafeBufferPointer { w in
        whole.update(from: w.baseAddress!)
        for part in 0..<5 { sliced.update(from: w.baseAddress!, part: part, of: 5) }  // 9 or 10 channels each
      }
      XCTAssertEqual(sliced.forward.array, whole.forward.array, "F(\(tile)x\(tile)) forward filters")
      XCTAssertEqual(sliced.flipped.array, whole.flipped.array, "F(\(tile)x\(tile)) flipped filters")
      // The turned filters, HWIO with in and out swapped: w'[ky][kx][co][ci] = w[2-ky][2-kx][ci][co].
      let turnedShape = Conv3x3Shape(height: 8, width: 8, inChannels: s.outChannels, outChannels: s.inChannels)
      var turned = [Float](repeating: 0, count: weights.count)
      for ky in 0..<3 {
        for kx in 0..<3 {
          for ci in 0..<s.inChannels {
            for co in 0..<s.outChannels {
              turned[((ky * 3 + kx) * s.outChannels + co) * s.inChannels + ci] =
                weights[(((2 - ky) * 3 + (2 - kx)) * s.inChannels + ci) * s.outChannels + co]
            }
          }
        }
      }
      let reference = WinogradFilters(shape: turnedShape, outputTile: tile, keepsFlipped: false)
      turned.withUnsafeBufferPointer { reference.update(from: $0.baseAddress!) }
      assertClose(whole.flipped.array, reference.forward.array, "F(\(tile)x\(tile)) flipped = turned")
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

  func testMaxPoolForwardAndBackward() {
    for (height, width) in [(4, 6), (5, 5)] {  // even and odd (trailing row/column dropped)
      let channels = 32
      let x = randomFloats(height * width * channels, seed: 11)
      let dOut = randomFloats((height / 2) * (width / 2) * channels, seed: 12)
      func pool(_ x: [Float]) -> [Float] {
        withPointers([x, [Float](repeating: 0, count: dOut.count)]) { p in
          maxPool2x2Forward(p[0], height: height, width: width, channels: channels, output: p[1])
        }[1]
      }
      let out = pool(x)
      assertClose(out, Naive.maxPool(x, height: height, width: width, channels: channels), "pool forward")
      let dX = withPointers([x, out, dOut, [Float](repeating: 9, count: x.count)]) { p in
        maxPool2x2Backward(
          input: p[0], output: p[1], outputGradient: p[2], height: height, width: width, channels: channels,
          inputGradient: p[3])
      }[3]
      assertClose(dX, Naive.maxPoolBackward(x, dOut, height: height, width: width, channels: channels), "pool backward")
      let sample = Array(stride(from: 0, to: x.count, by: 7))
      assertClose(
        sample.map { dX[$0] }, numericGradient(at: x, indices: sample, epsilon: 1e-4) { self.dot(pool($0), dOut) },
        tolerance: 1e-2, "pool finite differences")
    }
  }

  func testMaxPoolBackwardRoutesTiesToTheFirstPosition() {
    let x = [Float](repeating: 1, count: 2 * 2 * 16)
    let dX = withPointers([
      x, [Float](repeating: 1, count: 16), [Float](repeating: 3, count: 16), [Float](repeating: 0, count: x.count),
    ]) { p in
      maxPool2x2Backward(
        input: p[0], output: p[1], outputGradient: p[2], height: 2, width: 2, channels: 16, inputGradient: p[3])
    }[3]
    XCTAssertEqual(Array(dX[0..<16]), [Float](repeating: 3, count: 16))
    XCTAssertEqual(Array(dX[16...]), [Float](repeating: 0, count: 48))
  }

  /// A max-pool over a ReLU output, backward through both: the gradient of
  /// `Σ dOut ⊙ pool(relu(x))`, against the naive composition and finite differences.
  func testMaxPoolBackwardThroughReLU() {
    let (height, width, channels) = (5, 6, 16)
    let x = randomFloats(height * width * channels, seed: 13)
    let dOut = randomFloats((height / 2) * (width / 2) * channels, seed: 14)
    func forward(_ x: [Float]) -> (activation: [Float], pooled: [Float]) {
      let r = withPointers([x, [Float](repeating: 0, count: dOut.count)]) { p in
        for i in 0..<x.count / 16 {
          let v = UnsafeRawPointer(p[0] + 16 * i).loadUnaligned(as: SIMD16<Float>.self)
          UnsafeMutableRawPointer(p[0] + 16 * i).storeBytes(of: relu(v), as: SIMD16<Float>.self)
        }
        maxPool2x2Forward(p[0], height: height, width: width, channels: channels, output: p[1])
      }
      return (r[0], r[1])
    }
    let (activation, pooled) = forward(x)
    XCTAssertEqual(activation, x.map { max($0, 0) })
    let dX = withPointers([activation, pooled, dOut, [Float](repeating: 9, count: x.count)]) { p in
      maxPool2x2Backward(
        input: p[0], output: p[1], outputGradient: p[2], height: height, width: width, channels: channels,
        throughReLU: true, inputGradient: p[3])
    }[3]
    let naive = Naive.maxPoolBackward(activation, dOut, height: height, width: width, channels: channels)
    XCTAssertEqual(dX, zip(naive, x).map { $1 > 0 ? $0 : 0 })
    let sample = Array(stride(from: 0, to: x.count, by: 5))
    assertClose(
      sample.map { dX[$0] },
      numericGradient(at: x, indices: sample, epsilon: 1e-4) { self.dot(forward($0).pooled, dOut) },
      tolerance: 1e-2, "pool ∘ relu finite differences")
  }

  func testDenseForwardAndBackward() {
    let inputs = 48
    let outputs = 10
    let x = randomFloats(inputs, seed: 15)
    let w = randomFloats(inputs * outputs, seed: 16)
    let b = randomFloats(outputs, seed: 17)
    let dOut = randomFloats(outputs, seed: 18)
    func forward(_ x: [Float], _ w: [Float], _ b: [Float]) -> [Float] {
      withPointers([x, w, b, [Float](repeating: 0, count: outputs)]) { p in
        denseForward(input: p[0], inputs: inputs, weights: p[1], bias: p[2], outputs: outputs, output: p[3])
      }[3]
    }
    assertClose(forward(x, w, b), Naive.dense(x, w, b), "dense forward")
    let g = withPointers([
      x, w, dOut, [Float](repeating: 0, count: w.count), [Float](repeating: 0, count: outputs),
      [Float](repeating: 5, count: inputs),
    ]) { p in
      denseAddWeightGradient(
        inputs: p[0], outputGradients: p[2], images: 1, inputCount: inputs, outputCount: outputs, weightGradient: p[3])
      denseBackward(
        outputGradient: p[2], weights: p[1], inputs: inputs, outputs: outputs, biasGradient: p[4], inputGradient: p[5])
    }
    assertClose(
      g[3], numericGradient(at: w, indices: Array(0..<w.count)) { self.dot(forward(x, $0, b), dOut) }, tolerance: 1e-2,
      "dense dW")
    assertClose(
      g[4], numericGradient(at: b, indices: Array(0..<outputs)) { self.dot(forward(x, w, $0), dOut) }, tolerance: 1e-2,
      "dense dB")
    assertClose(
      g[5], numericGradient(at: x, indices: Array(0..<inputs)) { self.dot(forward($0, w, b), dOut) }, tolerance: 1e-2,
      "dense dX")
  }

  /// Several images in one call give each the bits of a call of its own (1 to 6 images,
  /// past the four one pass serves, on inputs with a tail past a multiple of 16).
  func testDenseOnSeveralImagesGivesTheBitsOfOneImageAtATime() {
    let (inputs, outputs) = (37, 7)
    let w = randomFloats(inputs * outputs, seed: 40)
    let b = randomFloats(outputs, seed: 41)
    for images in 1...6 {
      let x = randomFloats(images * inputs, seed: 42)
      let dy = randomFloats(images * outputs, seed: 43)
      let together = withPointers([
        x, w, b, dy, [Float](repeating: 0, count: images * outputs), [Float](repeating: 0, count: images * inputs),
        [Float](repeating: 0.5, count: outputs),
      ]) { p in
        denseForward(
          input: p[0], images: images, inputs: inputs, weights: p[1], bias: p[2], outputs: outputs, relu: true,
          output: p[4])
        denseBackward(
          outputGradient: p[3], images: images, weights: p[1], inputs: inputs, outputs: outputs, biasGradient: p[6],
          inputGradient: p[5])
      }
      let alone = withPointers([
        x, w, b, dy, [Float](repeating: 0, count: images * outputs), [Float](repeating: 0, count: images * inputs),
        [Float](repeating: 0.5, count: outputs),
      ]) { p in
        for image in 0..<images {
          denseForward(
            input: p[0] + image * inputs, inputs: inputs, weights: p[1], bias: p[2], outputs: outputs, relu: true,
            output: p[4] + image * outputs)
          denseBackward(
            outputGradient: p[3] + image * outputs, weights: p[1], inputs: inputs, outputs: outputs,
            biasGradient: p[6], inputGradient: p[5] + image * inputs)
        }
      }
      XCTAssertEqual(together[4], alone[4], "forward, \(images) images")
      XCTAssertEqual(together[5], alone[5], "input gradient, \(images) images")
      XCTAssertEqual(together[6], alone[6], "bias gradient, \(images) images")
      let naive = (0..<images).flatMap { image in
        Naive.dense(Array(x[(image * inputs)..<((image + 1) * inputs)]), w, b).map { max($0, 0) }
      }
      assertClose(together[4], naive, "forward against the naive dense, \(images) images")
    }
  }

  func testFirstNonFiniteFindsTheFirstInfinityOrNaN() {
    let clean = randomFloats(53, seed: 44).map { $0 * 1e30 }
    clean.withUnsafeBufferPointer { XCTAssertNil(firstNonFinite(in: $0.baseAddress!, 0..<53)) }
    for (bad, position) in [(Float.nan, 0), (.infinity, 17), (-.infinity, 31), (.nan, 50)] {
      var values = clean
      values[position] = bad
      values[52] = .nan
      values.withUnsafeBufferPointer { p in
        XCTAssertEqual(firstNonFinite(in: p.baseAddress!, 0..<53), position)
        XCTAssertEqual(firstNonFinite(in: p.baseAddress!, (position + 1)..<52), nil)
        XCTAssertEqual(firstNonFinite(in: p.baseAddress!, (position + 1)..<53), 52)
      }
    }
  }

  /// A 2×2 max-pool that applies the BatchNorm (and ReLU) below it as it loads each window
  /// gives the bits of pooling the BatchNorm's stored output, forward and backward, on an
  /// odd-sized map with negative scales (where the BatchNorm reverses the order).
  func testMaxPoolApplyingTheBatchNormBelowMatchesItsStoredOutput() {
    let (height, width, channels) = (5, 7, 32)
    let (count, pooledCount) = (height * width * channels, (height / 2) * (width / 2) * channels)
    let x = randomFloats(count, seed: 71)
    let scale = randomFloats(channels, seed: 72)
    let offset = randomFloats(channels, seed: 73).map { $0 * 0.3 }
    let dOut = randomFloats(pooledCount, seed: 74)
    for relu in [false, true] {
      let r = withPointers([
        x, scale, offset, dOut, [Float](repeating: 0, count: count), [Float](repeating: 0, count: pooledCount),
        [Float](repeating: 0, count: pooledCount), [Float](repeating: 1, count: count),
        [Float](repeating: 1, count: count),
      ]) { p in
        let folded = FoldedBatchNorm(scale: p[1], offset: p[2], relu: relu)
        batchNormApply(
          p[0], pixels: height * width, channels: channels, scale: p[1], offset: p[2], relu: relu, output: p[4])
        maxPool2x2Forward(p[4], height: height, width: width, channels: channels, output: p[5])
        maxPool2x2Forward(p[0], height: height, width: width, channels: channels, output: p[6], normalizing: folded)
        maxPool2x2Backward(
          input: p[4], output: p[5], outputGradient: p[3], height: height, width: width, channels: channels,
          throughReLU: relu, inputGradient: p[7])
        maxPool2x2Backward(
          input: p[0], output: p[6], outputGradient: p[3], height: height, width: width, channels: channels,
          throughReLU: relu, inputGradient: p[8], normalizing: folded)
      }
      XCTAssertEqual(r[6], r[5], "forward, relu \(relu)")
      XCTAssertEqual(r[8], r[7], "backward, relu \(relu)")
      XCTAssert(scale.contains { $0 < 0 } && r[8].contains { $0 != 0 }, "negative scales, gradients routed")
    }
  }

  /// The backward of a BatchNorm that a 2×2 max-pool applies, which routes the pool's
  /// gradient again instead of reading it stored, gives the bits of `maxPool2x2Backward`
  /// then `batchNormAddGradientSums` and `batchNormInputGradient`, on odd and even maps.
  func testPooledBatchNormBackwardMatchesTheStoredGradient() {
    for (height, width, channels) in [(5, 7, 32), (4, 6, 16)] {
      let (count, pooledCount) = (height * width * channels, (height / 2) * (width / 2) * channels)
      let x = randomFloats(count, seed: 81)
      let scale = randomFloats(channels, seed: 82)
      let offset = randomFloats(channels, seed: 83).map { $0 * 0.3 }
      let dOut = randomFloats(pooledCount, seed: 84)
      let mean = randomFloats(channels, seed: 85).map { $0 * 0.1 }
      let inverseDeviation = randomFloats(channels, seed: 86).map { 1 + abs($0) }
      let gamma = randomFloats(channels, seed: 87)
      let startingSums = randomFloats(2 * channels, seed: 88)
      for relu in [false, true] {
        let r = withPointers([
          x, scale, offset, dOut, [Float](repeating: 0, count: pooledCount), [Float](repeating: 7, count: count),
          startingSums, startingSums, mean, inverseDeviation, gamma, [Float](repeating: 7, count: count),
          [Float](repeating: 7, count: count),
        ]) { p in
          let folded = FoldedBatchNorm(scale: p[1], offset: p[2], relu: relu)
          maxPool2x2Forward(p[0], height: height, width: width, channels: channels, output: p[4], normalizing: folded)
          maxPool2x2Backward(
            input: p[0], output: p[4], outputGradient: p[3], height: height, width: width, channels: channels,
            throughReLU: relu, inputGradient: p[5], normalizing: folded)
          batchNormAddGradientSums(
            outputGradient: p[5], input: p[0], pixels: height * width, channels: channels, mean: p[8],
            inverseDeviation: p[9], sums: p[6])
          let pooled = PooledBatchNormGradient(
            input: p[0], output: p[4], outputGradient: p[3], height: height, width: width, channels: channels,
            throughReLU: relu, normalizing: folded)
          pooled.addSums(mean: p[8], inverseDeviation: p[9], into: p[7])
          batchNormInputGradient(
            outputGradient: p[5], input: p[0], pixels: height * width, channels: channels, mean: p[8],
            inverseDeviation: p[9], gamma: p[10], sums: p[6], batchCount: 3 * height * width, inputGradient: p[11])
          pooled.inputGradient(
            mean: p[8], inverseDeviation: p[9], gamma: p[10], sums: p[6], batchCount: 3 * height * width, into: p[12])
        }
        XCTAssertEqual(r[7], r[6], "sums, \(height)x\(width), relu \(relu)")
        XCTAssertNotEqual(r[6], startingSums, "sums added")
        XCTAssertEqual(r[12], r[11], "input gradient, \(height)x\(width), relu \(relu)")
      }
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

  /// A BatchNorm applied by the Winograd input copy, and its ReLU's backward from the
  /// BatchNorm's input, give the bits of `batchNormApply` and of `reluBackwardInPlace` on
  /// its stored output (channels of a multiple of 16, as Winograd needs, and 21 for the
  /// one-by-one tail of the ReLU's backward).
  func testBatchNormAppliedOnTheWayInMatchesItsStoredOutput() {
    for (height, width, channels) in [(5, 3, 32), (4, 4, 21)] {
      let pixels = height * width
      let x = randomFloats(pixels * channels, seed: 46)
      let scale = randomFloats(channels, seed: 47)
      let offset = randomFloats(channels, seed: 48).map { $0 * 0.3 }
      let dy = randomFloats(pixels * channels, seed: 49)
      let r = withPointers([
        x, scale, offset, [Float](repeating: 0, count: pixels * channels), dy, dy,
      ]) { p in
        batchNormApply(p[0], pixels: pixels, channels: channels, scale: p[1], offset: p[2], relu: true, output: p[3])
        reluBackwardInPlace(p[4], output: p[3], count: pixels * channels)
        reluBackwardThroughBatchNorm(p[5], input: p[0], pixels: pixels, channels: channels, scale: p[1], offset: p[2])
      }
      XCTAssertEqual(r[5], r[4], "ReLU backward, \(channels) channels")
      XCTAssertEqual(
        r[3], zip(x.indices, x).map { i, v in max(offset[i % channels].addingProduct(v, scale[i % channels]), 0) })
      XCTAssert(r[5].contains(0) && r[5].contains { $0 != 0 }, "some gradients masked, some kept")
      guard channels % 16 == 0 else { continue }
      let tiling = WinogradTiling(height: height, width: width, channels: channels, padding: 1, outputTile: 4)
      let filled = withPointers([
        x, scale, offset, [Float](repeating: 0, count: tiling.paddedCount),
        [Float](repeating: 0, count: tiling.paddedCount),
      ]) { p in
        tiling.fillPadded(
          p[0], p[3], normalizing: FoldedBatchNorm(scale: p[1], offset: p[2], relu: true))
        tiling.fillPadded(r[3], p[4])
      }
      XCTAssertEqual(filled[3], filled[4], "normalised copy = copy of the normalised")
    }
  }

  func testSoftmaxCrossEntropyMatchesNaiveAndFiniteDifferences() {
    let z = randomFloats(10, seed: 19).map { $0 * 5 }
    func loss(_ z: [Float]) -> (Float, [Float]) {
      var value: Float = 0
      let gradient = withPointers([z, [Float](repeating: 0, count: 10)]) { p in
        value = softmaxCrossEntropy(logits: p[0], classes: 10, label: 3, gradient: p[1])
      }[1]
      return (value, gradient)
    }
    let (value, gradient) = loss(z)
    let (expectedValue, expectedGradient) = Naive.softmaxCrossEntropy(z, label: 3)
    XCTAssertEqual(Double(value), expectedValue, accuracy: 1e-5)
    assertClose(gradient, expectedGradient.map(Float.init), "softmax gradient")
    assertClose(
      gradient, numericGradient(at: z, indices: Array(0..<10), epsilon: 1e-3) { Double(loss($0).0) }, tolerance: 1e-2,
      "softmax finite differences")
    XCTAssertEqual(loss([Float](repeating: 0, count: 9) + [1000]).0, 1000, accuracy: 1e-3, "stable for large logits")
  }
}
