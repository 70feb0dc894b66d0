// Convolutions of any odd square kernel, stride and zero padding over one NHWC image,
// lowered onto `gemm` through im2col: each output pixel's K×K×in patch becomes one row of a
// matrix, whose product with the HWIO filters (K·K·in rows × out columns) is the output.
// Its gradients are GEMMs too: the weights' is `columnsᵀ · dOutput`, and the input's is
// `dOutput · Wᵀ` scattered back over the patches (col2im). Winograd.swift and
// Conv3x3OneChannel.swift are faster for the shapes they serve; this serves every shape.

/// The shape of one convolution over one image.
@_spi(Kernels) public struct ConvShape: Sendable, Equatable {
  public let height: Int, width: Int, inChannels: Int, outChannels: Int
  public let kernel: Int, stride: Int, padding: Int

  public init(height: Int, width: Int, inChannels: Int, outChannels: Int, kernel: Int, stride: Int, padding: Int) {
    self.height = height
    self.width = width
    self.inChannels = inChannels
    self.outChannels = outChannels
    self.kernel = kernel
    self.stride = stride
    self.padding = padding
  }

  public var outHeight: Int { (height + 2 * padding - kernel) / stride + 1 }
  public var outWidth: Int { (width + 2 * padding - kernel) / stride + 1 }
  /// Output pixels: the GEMM `m`.
  public var outPixels: Int { outHeight * outWidth }
  /// The im2col row length: K · K · in.
  public var patch: Int { kernel * kernel * inChannels }
  /// FLOP of the forward pass (and of each gradient).
  public var flops: Int { 2 * outPixels * patch * outChannels }
}

/// Copies every K×K×in input patch into one row of `columns` (outPixels × patch), with
/// zeros where the patch reaches past the image. It goes one input row (oy, ky) at a time:
/// the output columns whose K pixels all lie inside the image copy one run of K · in
/// Floats each, and only those at the edges go pixel by pixel. Cost: O(outPixels · patch).
package func im2col(_ input: UnsafePointer<Float>, shape s: ConvShape, columns: UnsafeMutablePointer<Float>) {
  let cin = s.inChannels
  let run = s.kernel * cin
  // The output columns whose window x0 = ox · stride − padding ..< x0 + K lies inside.
  let interiorStart = min(s.outWidth, (s.padding + s.stride - 1) / s.stride)
  let lastInside = s.width + s.padding - s.kernel  // the largest ox · stride that fits
  let interiorEnd = lastInside < 0 ? interiorStart : max(interiorStart, min(s.outWidth, lastInside / s.stride + 1))
  for oy in 0..<s.outHeight {
    let outputRow = columns + oy * s.outWidth * s.patch
    for ky in 0..<s.kernel {
      let y = oy * s.stride - s.padding + ky
      let first = outputRow + ky * run  // this input row's run in the first output column's patch
      guard y >= 0 && y < s.height else {
        for ox in 0..<s.outWidth { zeroFloats(first + ox * s.patch, count: run) }
        continue
      }
      let sourceRow = input + y * s.width * cin
      @inline(__always) func edgeColumn(_ ox: Int) {
        let target = first + ox * s.patch
        for kx in 0..<s.kernel {
          let x = ox * s.stride - s.padding + kx
          if x >= 0 && x < s.width {
            copyFloats(sourceRow + x * cin, to: target + kx * cin, count: cin)
          } else {
            zeroFloats(target + kx * cin, count: cin)
          }
        }
      }
      for ox in 0..<interiorStart { edgeColumn(ox) }
      for ox in interiorStart..<interiorEnd {
        copyFloats(sourceRow + (ox * s.stride - s.padding) * cin, to: first + ox * s.patch, count: run)
      }
      for ox in interiorEnd..<s.outWidth { edgeColumn(ox) }
    }
  }
}

/// Adds every row of `columns` back onto the patch it came from: the adjoint of `im2col`.
/// Overwrites `input` (height × width × in). Cost: O(outPixels · patch).
package func col2im(_ columns: UnsafePointer<Float>, shape s: ConvShape, input: UnsafeMutablePointer<Float>) {
  let cin = s.inChannels
  input.update(repeating: 0, count: s.height * s.width * cin)
  for oy in 0..<s.outHeight {
    for ox in 0..<s.outWidth {
      let row = columns + (oy * s.outWidth + ox) * s.patch
      for ky in 0..<s.kernel {
        let y = oy * s.stride - s.padding + ky
        guard y >= 0 && y < s.height else { continue }
        for kx in 0..<s.kernel {
          let x = ox * s.stride - s.padding + kx
          guard x >= 0 && x < s.width else { continue }
          addInPlace(input + (y * s.width + x) * cin, row + (ky * s.kernel + kx) * cin, count: cin)
        }
      }
    }
  }
}

/// Forward: `output[p][co] = bias[co] + Σ columns[p][·] · weights[·][co]` (no bias when
/// nil), through `relu` when asked, after filling `columns` from `input`.
/// Cost: `shape.flops` FLOP.
@_spi(Kernels) public func convForward(
  input: UnsafePointer<Float>, shape s: ConvShape, weights: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
  relu applyReLU: Bool, columns: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>
) {
  im2col(input, shape: s, columns: columns)
  if let bias {
    fillRows(output, rows: s.outPixels, columns: s.outChannels, with: bias)
  }
  gemm(
    m: s.outPixels, n: s.outChannels, k: s.patch, a: columns, aRowStride: s.patch, aColStride: 1, b: weights,
    ldb: s.outChannels, c: output, ldc: s.outChannels, accumulate: bias != nil)
  if applyReLU { reluInPlace(output, count: s.outPixels * s.outChannels) }
}

/// Weight and bias gradients, accumulated: `dW += columnsᵀ · dOutput` and, when
/// `biasGradient` is given, `dB += Σ_p dOutput[p]`. `columns` is the matrix `im2col` made
/// of this image. Cost: `shape.flops` FLOP.
@_spi(Kernels) public func convWeightGradient(
  columns: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, shape s: ConvShape,
  weightGradient: UnsafeMutablePointer<Float>, biasGradient: UnsafeMutablePointer<Float>?
) {
  gemm(
    m: s.patch, n: s.outChannels, k: s.outPixels, a: columns, aRowStride: 1, aColStride: s.patch, b: outputGradient,
    ldb: s.outChannels, c: weightGradient, ldc: s.outChannels, accumulate: true)
  if let biasGradient {
    addColumnSums(of: outputGradient, rows: s.outPixels, columns: s.outChannels, to: biasGradient)
  }
}

/// Input gradient: `dColumns = dOutput · Wᵀ`, with `transposedWeights` the filters as
/// out × patch (`transposeMatrix`), scattered back by `col2im`. Overwrites
/// `inputGradient`. Cost: `shape.flops` FLOP.
@_spi(Kernels) public func convInputGradient(
  outputGradient: UnsafePointer<Float>, shape s: ConvShape, transposedWeights: UnsafePointer<Float>,
  columns: UnsafeMutablePointer<Float>, inputGradient: UnsafeMutablePointer<Float>
) {
  gemm(
    m: s.outPixels, n: s.patch, k: s.outChannels, a: outputGradient, aRowStride: s.outChannels, aColStride: 1,
    b: transposedWeights, ldb: s.patch, c: columns, ldc: s.patch, accumulate: false)
  col2im(columns, shape: s, input: inputGradient)
}

/// Writes the `rows` × `columns` matrix `source`, transposed, into `target`, for rows
/// `part` (all by default) so that workers can share the work. Cost: O(rows · columns).
package func transposeMatrix(
  _ source: UnsafePointer<Float>, rows: Int, columns: Int, rowRange: Range<Int>? = nil,
  into target: UnsafeMutablePointer<Float>
) {
  for r in rowRange ?? 0..<rows {
    for c in 0..<columns { target[c * rows + r] = source[r * columns + c] }
  }
}

/// `max(x, 0)` over `count` values in place, sixteen at a time. Cost: `count` compares.
package func reluInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
  var i = 0
  while i + 16 <= count {
    let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
    UnsafeMutableRawPointer(x + i).storeBytes(of: relu(v), as: SIMD16<Float>.self)
    i += 16
  }
  while i < count {
    x[i] = max(x[i], 0)
    i += 1
  }
}

/// ReLU's backward in place: zeroes `gradient` wherever `output` (the ReLU's output) is
/// not positive. Cost: `count` compares.
package func reluBackwardInPlace(_ gradient: UnsafeMutablePointer<Float>, output: UnsafePointer<Float>, count: Int) {
  var i = 0
  while i + 16 <= count {
    let y = UnsafeRawPointer(output + i).loadUnaligned(as: SIMD16<Float>.self)
    let g = UnsafeRawPointer(gradient + i).loadUnaligned(as: SIMD16<Float>.self)
    UnsafeMutableRawPointer(gradient + i).storeBytes(of: g.replacing(with: 0, where: y .<= 0), as: SIMD16<Float>.self)
    i += 16
  }
  while i < count {
    if output[i] <= 0 { gradient[i] = 0 }
    i += 1
  }
}
