// Fully connected layer. Weights are row-major [outputs][inputs]. Several images are laid
// out one after another (`inputs` Floats each, their outputs `outputs` each), and each
// pass over a weight row serves up to four of them: a large layer's weights are read from
// memory once per four images instead of once per image. Every image's values have the
// bits of a call on that image alone. Inputs run sixteen at a time; past the last
// multiple of 16, one at a time.

/// The images one pass over the weights serves.
let denseImagesPerPass = 4

/// `output[b][o] = bias[o] + Σ_i weights[o][i] · input[b][i]` (no bias when nil) for
/// each of `images` images, through `relu` when asked. Four outputs of four images at a
/// time, so that their sums form sixteen independent chains; each output still adds in
/// `i` order, in sixteen lanes summed at the end. Cost: 2 · images · inputs · outputs FLOP,
/// and one read of the weights per four images.
@_spi(Kernels) public func denseForward(
  input: UnsafePointer<Float>, images: Int = 1, inputs: Int, weights: UnsafePointer<Float>,
  bias: UnsafePointer<Float>?, outputs: Int, relu applyReLU: Bool = false, output: UnsafeMutablePointer<Float>
) {
  let whole = inputs / 16 * 16
  let bytes = whole * MemoryLayout<Float>.stride
  for firstImage in stride(from: 0, to: images, by: denseImagesPerPass) {
    // Images and outputs past the end are clamped onto the last ones and computed twice.
    @inline(__always) func image(_ b: Int) -> Int { min(firstImage + b, images - 1) }
    let (x0, x1, x2, x3) = (
      UnsafeRawPointer(input + image(0) * inputs), UnsafeRawPointer(input + image(1) * inputs),
      UnsafeRawPointer(input + image(2) * inputs), UnsafeRawPointer(input + image(3) * inputs)
    )
    var first = 0
    while first < outputs {
      @inline(__always) func row(_ r: Int) -> UnsafeRawPointer {
        UnsafeRawPointer(weights + min(first + r, outputs - 1) * inputs)
      }
      let (w0, w1, w2, w3) = (row(0), row(1), row(2), row(3))
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
      first += 4
    }
  }
}

/// Backward of `images` images but for the weights: adds `dB[o] += dy[b][o]` for each
/// image in order when `biasGradient` is given, and when `inputGradient` is given
/// overwrites it with `dx[b][i] = Σ_o dy[b][o] · W[o][i]`, adding in `o` order. Each
/// 16-input block of the four images' `dx` is summed in registers in one pass over the
/// weights' column. (The weight gradient is `denseAddWeightGradient`'s, one GEMM per
/// shard.) Cost: 2 · images · inputs · outputs FLOP, and one read of the weights per four
/// images.
@_spi(Kernels) public func denseBackward(
  outputGradient: UnsafePointer<Float>, images: Int = 1, weights: UnsafePointer<Float>, inputs: Int, outputs: Int,
  biasGradient: UnsafeMutablePointer<Float>?, inputGradient: UnsafeMutablePointer<Float>?
) {
  if let biasGradient { addColumnSums(of: outputGradient, rows: images, columns: outputs, to: biasGradient) }
  guard let inputGradient else { return }
  let w = UnsafeRawPointer(weights)
  let rowBytes = inputs * MemoryLayout<Float>.stride
  let whole = inputs / 16 * 16
  for firstImage in stride(from: 0, to: images, by: denseImagesPerPass) {
    @inline(__always) func image(_ b: Int) -> Int { min(firstImage + b, images - 1) }
    let (dy0, dy1, dy2, dy3) = (
      outputGradient + image(0) * outputs, outputGradient + image(1) * outputs,
      outputGradient + image(2) * outputs, outputGradient + image(3) * outputs
    )
    let count = min(denseImagesPerPass, images - firstImage)
    for i in whole..<inputs {
      for b in 0..<count {
        let dy = outputGradient + (firstImage + b) * outputs
        var dx: Float = 0
        for o in 0..<outputs { dx = dx.addingProduct(dy[o], weights[o * inputs + i]) }
        inputGradient[(firstImage + b) * inputs + i] = dx
      }
    }
    typealias Lane = SIMD16<Float>
    for i in stride(from: 0, to: whole * MemoryLayout<Float>.stride, by: 64) {
      var (d0, d1, d2, d3) = (Lane(), Lane(), Lane(), Lane())
      for o in 0..<outputs {
        let v = w.loadUnaligned(fromByteOffset: o * rowBytes + i, as: Lane.self)
        (d0, d1, d2, d3) = (
          d0.addingProduct(dy0[o], v), d1.addingProduct(dy1[o], v), d2.addingProduct(dy2[o], v),
          d3.addingProduct(dy3[o], v)
        )
      }
      @inline(__always) func store(_ dx: Lane, _ b: Int) {
        guard b < count else { return }
        UnsafeMutableRawPointer(inputGradient + (firstImage + b) * inputs).storeBytes(
          of: dx, toByteOffset: i, as: Lane.self)
      }
      store(d0, 0)
      store(d1, 1)
      store(d2, 2)
      store(d3, 3)
    }
  }
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
