@_spi(Kernels) import PTrain
import XCTest

/// The Winograd filters (`WinogradWeights.swift`, `WinogradFilters`) and the weight
/// gradient they are summed into.
final class WinogradWeightsTests: KernelTestCase {
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
}
