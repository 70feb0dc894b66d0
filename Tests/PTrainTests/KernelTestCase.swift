@_spi(Kernels) import PTrain
import XCTest

/// What the kernel tests share: each kernel is checked against its naive reference, and
/// its gradient against central finite differences of the kernel's own forward pass.
class KernelTestCase: XCTestCase {
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
}
