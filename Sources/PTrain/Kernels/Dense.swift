// Fully connected layer. Weights are row-major [outputs][inputs]. Several images are laid
// out one after another (`inputs` Floats each, their outputs `outputs` each). The kernels
// take a few weight rows (forward) or columns (input gradient) at a time and run every
// image through them, four images per pass, while they are in cache: a large layer's
// weights are read from memory once per call, however many images it has (a worker's
// whole block, `Replica.blockDense`). Every image's values have the bits of a call on
// that image alone. Inputs run sixteen at a time; past the last multiple of 16, one at a
// time.

/// The images one pass over a few weight rows or columns serves.
let denseImagesPerPass = 4

/// The bytes of inputs `denseForward` runs through the weights at a time: with four
/// weight rows they stay in L2, even Zen 3's 512 KB.
let denseForwardInputBytes = 256 << 10

/// `output[b][o] = bias[o] + Σ_i weights[o][i] · input[b][i]` (no bias when nil) for
/// each of `images` images, through `relu` when asked. The images go in chunks of about
/// `denseForwardInputBytes` of inputs (a multiple of four images), each through every
/// block of four weight rows (`denseForwardChunk`): a 3136-input layer's rows are 50 KB
/// a block, all 128 of them 1.6 MB, so its weights are read from memory once per chunk
/// of 20 images instead of once per four. Cost: 2 · images · inputs · outputs FLOP.
@_spi(Kernels) public func denseForward(
  input: UnsafePointer<Float>, images: Int = 1, inputs: Int, weights: UnsafePointer<Float>,
  bias: UnsafePointer<Float>?, outputs: Int, relu applyReLU: Bool = false, output: UnsafeMutablePointer<Float>
) {
  let perPass = denseImagesPerPass
  let chunk = max(perPass, denseForwardInputBytes / (max(inputs, 1) * MemoryLayout<Float>.stride) / perPass * perPass)
  for first in stride(from: 0, to: images, by: chunk) {
    denseForwardChunk(
      input: input + first * inputs, images: min(chunk, images - first), inputs: inputs, weights: weights, bias: bias,
      outputs: outputs, relu: applyReLU, output: output + first * outputs)
  }
}

/// `denseForward` on one chunk of images: four outputs of four images at a time, so that
/// their sums form sixteen independent chains; each output still adds in `i` order, in
/// sixteen lanes summed at the end. The four weight rows stay in cache while every image
/// of the chunk passes. Cost: 2 · images · inputs · outputs FLOP.
private func denseForwardChunk(
  input: UnsafePointer<Float>, images: Int, inputs: Int, weights: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
  outputs: Int, relu applyReLU: Bool, output: UnsafeMutablePointer<Float>
) {
  let whole = inputs / 16 * 16
  let bytes = whole * MemoryLayout<Float>.stride
  for first in stride(from: 0, to: outputs, by: 4) {
    // Outputs and images past the end are clamped onto the last ones and computed twice.
    @inline(__always) func row(_ r: Int) -> UnsafeRawPointer {
      UnsafeRawPointer(weights + min(first + r, outputs - 1) * inputs)
    }
    let (w0, w1, w2, w3) = (row(0), row(1), row(2), row(3))
    for firstImage in stride(from: 0, to: images, by: denseImagesPerPass) {
      @inline(__always) func image(_ b: Int) -> Int { min(firstImage + b, images - 1) }
      let (x0, x1, x2, x3) = (
        UnsafeRawPointer(input + image(0) * inputs), UnsafeRawPointer(input + image(1) * inputs),
        UnsafeRawPointer(input + image(2) * inputs), UnsafeRawPointer(input + image(3) * inputs)
      )
      typealias Lane = SIMD16<Float>
      var (a00, a01, a02, a03) = (Lane(), Lane(), Lane(), Lane())
      var (a10, a11, a12, a13) = (Lane(), Lane(), Lane(), Lane())
      var (a20, a21, a22, a23) = (Lane(), Lane(), Lane(), Lane())
      var (a30, a31, a32, a33) = (Lane(), Lane(), Lane(), Lane())
      for i in stride(from: 0, to: bytes, by: 64) {
        let (v0, v1, v2, v3) = (
          w0.loadUnaligned(fromByteOffset: i, as: Lane.self), w1.loadUnaligned(fromByteOffset: i, as: Lane.self),
          w2.loadUnaligned(fromByteOffset: i, as: Lane.self), w3.loadUnaligned(fromByteOffset: i, as: Lane.self)
        )
        var x = x0.loadUnaligned(fromByteOffset: i, as: Lane.self)
        (a00, a01, a02, a03) = (
          a00.addingProduct(v0, x), a01.addingProduct(v1, x), a02.addingProduct(v2, x), a03.addingProduct(v3, x)
        )
        x = x1.loadUnaligned(fromByteOffset: i, as: Lane.self)
        (a10, a11, a12, a13) = (
          a10.addingProduct(v0, x), a11.addingProduct(v1, x), a12.addingProduct(v2, x), a13.addingProduct(v3, x)
        )
        x = x2.loadUnaligned(fromByteOffset: i, as: Lane.self)
        (a20, a21, a22, a23) = (
          a20.addingProduct(v0, x), a21.addingProduct(v1, x), a22.addingProduct(v2, x), a23.addingProduct(v3, x)
        )
        x = x3.loadUnaligned(fromByteOffset: i, as: Lane.self)
        (a30, a31, a32, a33) = (
          a30.addingProduct(v0, x), a31.addingProduct(v1, x), a32.addingProduct(v2, x), a33.addingProduct(v3, x)
        )
      }
      @inline(__always) func store(_ sum: Lane, _ b: Int, _ r: Int) {
        guard firstImage + b < images, first + r < outputs else { return }
        let x = input + (firstImage + b) * inputs
        var value = (bias?[first + r] ?? 0) + sum.sum()
        let w = weights + (first + r) * inputs
        for i in whole..<inputs { value = value.addingProduct(w[i], x[i]) }
        output[(firstImage + b) * outputs + first + r] = applyReLU ? max(value, 0) : value
      }
      store(a00, 0, 0)
      store(a01, 0, 1)
      store(a02, 0, 2)
      store(a03, 0, 3)
      store(a10, 1, 0)
      store(a11, 1, 1)
      store(a12, 1, 2)
      store(a13, 1, 3)
      store(a20, 2, 0)
      store(a21, 2, 1)
      store(a22, 2, 2)
      store(a23, 2, 3)
      store(a30, 3, 0)
      store(a31, 3, 1)
      store(a32, 3, 2)
      store(a33, 3, 3)
    }
  }
}

/// Backward of `images` images but for the weights: adds `dB[o] += dy[b][o]` for each
/// image in order when `biasGradient` is given, and when `inputGradient` is given
/// overwrites it with `dx[b][i] = Σ_o dy[b][o] · W[o][i]`, adding in `o` order. Each
/// 32-input block of four images' `dx` is summed in registers in one pass over the
/// weights' columns, which stay in L1 while every image passes (32 inputs × 128 outputs
/// are 16 KB; see `columns`). (The weight gradient is `denseTreeWeightGradient`'s or
/// `denseAddWeightGradient`'s.) Cost: 2 · images · inputs · outputs FLOP, and one read of
/// the weights from memory.
@_spi(Kernels) public func denseBackward(
  outputGradient: UnsafePointer<Float>, images: Int = 1, weights: UnsafePointer<Float>, inputs: Int, outputs: Int,
  biasGradient: UnsafeMutablePointer<Float>?, inputGradient: UnsafeMutablePointer<Float>?
) {
  if let biasGradient { addColumnSums(of: outputGradient, rows: images, columns: outputs, to: biasGradient) }
  guard let inputGradient else { return }
  let w = UnsafeRawPointer(weights)
  let rowBytes = inputs * MemoryLayout<Float>.stride
  let whole = inputs / 16 * 16
  for i in whole..<inputs {
    for b in 0..<images {
      let dy = outputGradient + b * outputs
      var dx: Float = 0
      for o in 0..<outputs { dx = dx.addingProduct(dy[o], weights[o * inputs + i]) }
      inputGradient[b * inputs + i] = dx
    }
  }
  typealias Lane = SIMD16<Float>
  /// `dx` of every image over the 16 · `lanes` inputs from byte `i` on: four images at a
  /// time, 4 · `lanes` independent chains of FMAs (four leave the FMA pipes waiting on
  /// each chain's latency), while those columns of the weights stay in L1.
  @inline(__always) func columns(from i: Int, lanes: Int) {
    for firstImage in stride(from: 0, to: images, by: denseImagesPerPass) {
      @inline(__always) func image(_ b: Int) -> Int { min(firstImage + b, images - 1) }
      let (dy0, dy1, dy2, dy3) = (
        outputGradient + image(0) * outputs, outputGradient + image(1) * outputs,
        outputGradient + image(2) * outputs, outputGradient + image(3) * outputs
      )
      let count = min(denseImagesPerPass, images - firstImage)
      var (d0, d1, d2, d3) = (Lane(), Lane(), Lane(), Lane())
      var (e0, e1, e2, e3) = (Lane(), Lane(), Lane(), Lane())  // the second vector of inputs
      for o in 0..<outputs {
        let (g0, g1, g2, g3) = (dy0[o], dy1[o], dy2[o], dy3[o])
        let v = w.loadUnaligned(fromByteOffset: o * rowBytes + i, as: Lane.self)
        (d0, d1, d2, d3) = (
          d0.addingProduct(g0, v), d1.addingProduct(g1, v), d2.addingProduct(g2, v), d3.addingProduct(g3, v)
        )
        guard lanes == 2 else { continue }
        let u = w.loadUnaligned(fromByteOffset: o * rowBytes + i + 64, as: Lane.self)
        (e0, e1, e2, e3) = (
          e0.addingProduct(g0, u), e1.addingProduct(g1, u), e2.addingProduct(g2, u), e3.addingProduct(g3, u)
        )
      }
      @inline(__always) func store(_ dx: Lane, _ b: Int, lane: Int) {
        guard b < count else { return }
        UnsafeMutableRawPointer(inputGradient + (firstImage + b) * inputs).storeBytes(
          of: dx, toByteOffset: i + 64 * lane, as: Lane.self)
      }
      store(d0, 0, lane: 0)
      store(d1, 1, lane: 0)
      store(d2, 2, lane: 0)
      store(d3, 3, lane: 0)
      guard lanes == 2 else { continue }
      store(e0, 0, lane: 1)
      store(e1, 1, lane: 1)
      store(e2, 2, lane: 1)
      store(e3, 3, lane: 1)
    }
  }
  let wholeBytes = whole * MemoryLayout<Float>.stride
  var i = 0
  while i + 128 <= wholeBytes {
    columns(from: i, lanes: 2)
    i += 128
  }
  if i < wholeBytes { columns(from: i, lanes: 1) }
}

/// `dW[o][i] += Σ_b dy[b][o] · x[b][i]` over `images` images, adding them in order (the
/// bits of adding one image at a time), or `dW = …` from nothing when `overwrite`, as one
/// GEMM (`dW = dYᵀ · X`). Cost: 2 · images · inputs · outputs FLOP.
@_spi(Kernels) public func denseAddWeightGradient(
  inputs x: UnsafePointer<Float>, outputGradients dy: UnsafePointer<Float>, images: Int, inputCount: Int,
  outputCount: Int, overwrite: Bool = false, weightGradient: UnsafeMutablePointer<Float>
) {
  gemm(
    m: outputCount, n: inputCount, k: images, a: dy, aRowStride: 1, aColStride: outputCount, b: x, ldb: inputCount,
    c: weightGradient, ldc: inputCount, accumulate: !overwrite)
}
