@_spi(Kernels) import PTrain
import XCTest

/// The element-wise kernels, BatchNorm applied on the way in, and softmax cross-entropy.
final class ElementwiseKernelTests: KernelTestCase {
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

  /// The inline copy and zero fill write exactly `count` Floats, for every count that
  /// exercises their 8-, 4-, 2- and 1-lane steps, and nothing past them.
  func testCopyFloatsAndZeroFloatsWriteExactlyCountFloats() {
    let source = randomFloats(40, seed: 45)
    for count in 0...35 {
      var copied = [Float](repeating: .nan, count: 40)
      var zeroed = [Float](repeating: 7, count: 40)
      source.withUnsafeBufferPointer { from in
        copied.withUnsafeMutableBufferPointer { copyFloats(from.baseAddress!, to: $0.baseAddress! + 2, count: count) }
      }
      zeroed.withUnsafeMutableBufferPointer { zeroFloats($0.baseAddress! + 3, count: count) }
      XCTAssertEqual(Array(copied[2..<(2 + count)]), Array(source[0..<count]), "copy of \(count)")
      XCTAssertTrue(copied[0..<2].allSatisfy(\.isNaN) && copied[(2 + count)...].allSatisfy(\.isNaN), "copy of \(count)")
      let expected =
        [Float](repeating: 7, count: 3) + [Float](repeating: 0, count: count)
        + [Float](repeating: 7, count: 37 - count)
      XCTAssertEqual(zeroed, expected, "zero fill of \(count)")
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
    for smoothing: Float in [0, 0.1, 0.3] {
      func loss(_ z: [Float]) -> (Float, [Float]) {
        var value: Float = 0
        let gradient = withPointers([z, [Float](repeating: 0, count: 10)]) { p in
          value = softmaxCrossEntropy(logits: p[0], classes: 10, label: 3, gradient: p[1], smoothing: smoothing)
        }[1]
        return (value, gradient)
      }
      let (value, gradient) = loss(z)
      let (expectedValue, expectedGradient) = Naive.softmaxCrossEntropy(z, label: 3, smoothing: Double(smoothing))
      XCTAssertEqual(Double(value), expectedValue, accuracy: 1e-5, "smoothing \(smoothing)")
      assertClose(gradient, expectedGradient.map(Float.init), "softmax gradient, smoothing \(smoothing)")
      assertClose(
        gradient, numericGradient(at: z, indices: Array(0..<10), epsilon: 1e-3) { Double(loss($0).0) },
        tolerance: 1e-2, "softmax finite differences, smoothing \(smoothing)")
      let large = loss([Float](repeating: 0, count: 9) + [1000])
      XCTAssertEqual(large.0, 1000 * (1 - smoothing * 0.1), accuracy: 1e-3, "stable for large logits")
    }
  }
}
