@_spi(Kernels) import PTrain
import XCTest

/// The pooling kernels, and a max-pool applying the BatchNorm below it.
final class PoolingKernelTests: KernelTestCase {
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
}
