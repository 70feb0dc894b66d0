@_spi(Kernels) import PTrain
import XCTest

/// The im2col and one-channel convolutions against the naive ones and finite differences.
final class ConvolutionKernelTests: KernelTestCase {
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

  /// im2col against a plain patch copy, on shapes where the runs it copies whole begin,
  /// end or vanish: strides 1 and 2, kernels 1, 3 and 5, maps narrower than the kernel,
  /// channel counts that fill no vector.
  func testIm2colMatchesAPlainPatchCopy() {
    let shapes = [
      ConvShape(height: 5, width: 7, inChannels: 3, outChannels: 1, kernel: 3, stride: 1, padding: 1),
      ConvShape(height: 6, width: 6, inChannels: 16, outChannels: 1, kernel: 3, stride: 2, padding: 1),
      ConvShape(height: 7, width: 5, inChannels: 5, outChannels: 1, kernel: 3, stride: 2, padding: 1),
      ConvShape(height: 6, width: 6, inChannels: 16, outChannels: 1, kernel: 1, stride: 2, padding: 0),
      ConvShape(height: 6, width: 9, inChannels: 2, outChannels: 1, kernel: 5, stride: 1, padding: 2),
      ConvShape(height: 3, width: 2, inChannels: 3, outChannels: 1, kernel: 3, stride: 1, padding: 1),
      ConvShape(height: 4, width: 4, inChannels: 1, outChannels: 1, kernel: 5, stride: 1, padding: 2),
      ConvShape(height: 8, width: 8, inChannels: 9, outChannels: 1, kernel: 3, stride: 1, padding: 0),
    ]
    for s in shapes {
      let x = randomFloats(s.height * s.width * s.inChannels, seed: 31)
      var expected = [Float](repeating: 0, count: s.outPixels * s.patch)
      for oy in 0..<s.outHeight {
        for ox in 0..<s.outWidth {
          for ky in 0..<s.kernel {
            for kx in 0..<s.kernel {
              let (y, xx) = (oy * s.stride - s.padding + ky, ox * s.stride - s.padding + kx)
              guard y >= 0 && y < s.height && xx >= 0 && xx < s.width else { continue }
              for c in 0..<s.inChannels {
                expected[(oy * s.outWidth + ox) * s.patch + (ky * s.kernel + kx) * s.inChannels + c] =
                  x[(y * s.width + xx) * s.inChannels + c]
              }
            }
          }
        }
      }
      var columns = [Float](repeating: .nan, count: s.outPixels * s.patch)
      x.withUnsafeBufferPointer { input in
        columns.withUnsafeMutableBufferPointer { im2col(input.baseAddress!, shape: s, columns: $0.baseAddress!) }
      }
      XCTAssertEqual(columns, expected, "im2col \(s)")
    }
  }
}
