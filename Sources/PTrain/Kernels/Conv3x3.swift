// 3×3 "valid" convolution over one NHWC image, lowered onto `gemm` through im2col. The
// engine no longer trains with it: conv1 runs directly (Conv3x3OneChannel.swift), which
// matches it bit for bit, and conv2 through Winograd (Winograd.swift), with 16 instead of
// 36 multiplies per 2×2 tile. It stays as the reference for both and as the baseline that
// Benchmarks/ measures Winograd against.
// Weights are HWIO: `w[((ky * 3 + kx) * cin + ci) * cout + co]`, which makes the
// im2col row for output pixel p line up with the weight row index.

/// The shape of a 3×3, stride-1 convolution over one image, with `padding` zeros on
/// every side (0: "valid", 1: "same"). The im2col functions here serve `padding` 0 only;
/// the Winograd ones serve both.
@_spi(Kernels) public struct Conv3x3Shape: Sendable, Equatable {
  public let height: Int, width: Int, inChannels: Int, outChannels: Int, padding: Int
  public init(height: Int, width: Int, inChannels: Int, outChannels: Int, padding: Int = 0) {
    self.height = height
    self.width = width
    self.inChannels = inChannels
    self.outChannels = outChannels
    self.padding = padding
  }
  public var outHeight: Int { height + 2 * padding - 2 }
  public var outWidth: Int { width + 2 * padding - 2 }
  /// Output pixels, the GEMM `m`.
  public var outPixels: Int { outHeight * outWidth }
  /// The im2col row length, the GEMM `k`: 9 · inChannels.
  public var patch: Int { 9 * inChannels }
  public var weightCount: Int { patch * outChannels }
  /// FLOP of one forward pass (also of each of the two gradients).
  public var flops: Int { 2 * outPixels * patch * outChannels }
}

/// Copies every 3×3×cin input patch into one row of `columns` (outPixels × patch).
/// Each (pixel, ky) pair is one contiguous copy of 3·cin Floats. Cost: O(outPixels · patch).
package func im2col3x3(
  _ input: UnsafePointer<Float>, shape s: Conv3x3Shape, columns: UnsafeMutablePointer<Float>
) {
  let run = 3 * s.inChannels
  for oy in 0..<s.outHeight {
    for ox in 0..<s.outWidth {
      let row = columns + (oy * s.outWidth + ox) * s.patch
      for ky in 0..<3 {
        let source = input + ((oy + ky) * s.width + ox) * s.inChannels
        if run < 16 {  // conv1's 3-Float runs: a call to memmove would cost more than the copy
          for t in 0..<run { row[ky * run + t] = source[t] }
        } else {
          (row + ky * run).update(from: source, count: run)
        }
      }
    }
  }
}

/// Forward: `output[p][co] = bias[co] + Σ columns[p][·] · weights[·][co]`, after filling
/// `columns` from `input`. Cost: `shape.flops` FLOP.
@_spi(Kernels) public func conv3x3Forward(
  input: UnsafePointer<Float>, shape s: Conv3x3Shape,
  weights: UnsafePointer<Float>, bias: UnsafePointer<Float>,
  columns: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>
) {
  im2col3x3(input, shape: s, columns: columns)
  fillRows(output, rows: s.outPixels, columns: s.outChannels, with: bias)
  gemm(
    m: s.outPixels, n: s.outChannels, k: s.patch,
    a: columns, aRowStride: s.patch, aColStride: 1,
    b: weights, ldb: s.outChannels, c: output, ldc: s.outChannels, accumulate: true)
}

/// Weight and bias gradients, accumulated: `dW += columnsᵀ · dOutput`, `dB += Σ_p dOutput[p]`.
/// `columns` is the im2col matrix the forward pass left. Cost: `shape.flops` FLOP.
@_spi(Kernels) public func conv3x3WeightGradient(
  columns: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, shape s: Conv3x3Shape,
  weightGradient: UnsafeMutablePointer<Float>, biasGradient: UnsafeMutablePointer<Float>
) {
  gemm(
    m: s.patch, n: s.outChannels, k: s.outPixels,
    a: columns, aRowStride: 1, aColStride: s.patch,
    b: outputGradient, ldb: s.outChannels, c: weightGradient, ldc: s.outChannels,
    accumulate: true)
  addColumnSums(of: outputGradient, rows: s.outPixels, columns: s.outChannels, to: biasGradient)
}
