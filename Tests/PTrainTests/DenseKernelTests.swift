@_spi(Kernels) import PTrain
import XCTest

/// The dense kernels against the naive ones.
final class DenseKernelTests: KernelTestCase {
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

  /// Several images in one call give each the bits of a call of its own (1 to 9 images,
  /// past the four one pass serves and past two passes), on inputs with a tail past a
  /// multiple of 16: an even and an odd number of 16-input vectors (the input gradient
  /// runs two at a time), and inputs so wide that the forward runs the images in chunks
  /// of four (`denseForwardInputBytes`).
  func testDenseOnSeveralImagesGivesTheBitsOfOneImageAtATime() {
    for (inputs, outputs) in [(37, 7), (53, 6), (16 * 1024 + 3, 5)] {
      checkSeveralImages(inputs: inputs, outputs: outputs)
    }
  }

  func checkSeveralImages(inputs: Int, outputs: Int) {
    let w = randomFloats(inputs * outputs, seed: 40)
    let b = randomFloats(outputs, seed: 41)
    for images in 1...9 {
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
      XCTAssertEqual(together[4], alone[4], "forward, \(images) images of \(inputs)")
      XCTAssertEqual(together[5], alone[5], "input gradient, \(images) images of \(inputs)")
      XCTAssertEqual(together[6], alone[6], "bias gradient, \(images) images of \(inputs)")
      let naive = (0..<images).flatMap { image in
        Naive.dense(Array(x[(image * inputs)..<((image + 1) * inputs)]), w, b).map { max($0, 0) }
      }
      assertClose(together[4], naive, "forward against the naive dense, \(images) images")
    }
  }
}
