// Fully connected layer. Weights are row-major [outputs][inputs]. Inputs run sixteen at
// a time; past the last multiple of 16, one at a time.

/// `output[o] = bias[o] + Σ_i weights[o][i] · input[i]` (no bias when nil), through
/// `relu` when asked, five outputs at a time so their sums form independent chains (each
/// output still adds in `i` order). Cost: 2 · inputs · outputs FLOP.
public func denseForward(
  input: UnsafePointer<Float>, inputs: Int, weights: UnsafePointer<Float>,
  bias: UnsafePointer<Float>?, outputs: Int, relu applyReLU: Bool = false, output: UnsafeMutablePointer<Float>
) {
  let x = UnsafeRawPointer(input)
  let whole = inputs / 16 * 16
  let bytes = whole * MemoryLayout<Float>.stride
  var first = 0
  while first < outputs {
    // Outputs past the end are clamped onto the last one and computed twice.
    @inline(__always) func row(_ r: Int) -> UnsafeRawPointer {
      UnsafeRawPointer(weights + min(first + r, outputs - 1) * inputs)
    }
    let (w0, w1, w2, w3, w4) = (row(0), row(1), row(2), row(3), row(4))
    var (a0, a1, a2, a3, a4) = (SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>())
    for i in stride(from: 0, to: bytes, by: 64) {
      let xi = x.loadUnaligned(fromByteOffset: i, as: SIMD16<Float>.self)
      a0 = a0.addingProduct(w0.loadUnaligned(fromByteOffset: i, as: SIMD16<Float>.self), xi)
      a1 = a1.addingProduct(w1.loadUnaligned(fromByteOffset: i, as: SIMD16<Float>.self), xi)
      a2 = a2.addingProduct(w2.loadUnaligned(fromByteOffset: i, as: SIMD16<Float>.self), xi)
      a3 = a3.addingProduct(w3.loadUnaligned(fromByteOffset: i, as: SIMD16<Float>.self), xi)
      a4 = a4.addingProduct(w4.loadUnaligned(fromByteOffset: i, as: SIMD16<Float>.self), xi)
    }
    @inline(__always) func store(_ sum: SIMD16<Float>, _ r: Int) {
      guard first + r < outputs else { return }
      var value = (bias?[first + r] ?? 0) + sum.sum()
      let w = weights + (first + r) * inputs
      for i in whole..<inputs { value = value.addingProduct(w[i], input[i]) }
      output[first + r] = applyReLU ? max(value, 0) : value
    }
    store(a0, 0)
    store(a1, 1)
    store(a2, 2)
    store(a3, 3)
    store(a4, 4)
    first += 5
  }
}

/// Backward: accumulates `dW[o][i] += dy[o] · x[i]` when `weightGradient` is given and
/// `dB[o] += dy[o]` when `biasGradient` is; when `inputGradient` is given,
/// overwrites it with `dx[i] = Σ_o dy[o] · W[o][i]`, adding in `o` order. One pass over
/// `i`, each `dx` vector summed in a register. Cost: 2 · inputs · outputs FLOP for each
/// of the two.
public func denseBackward(
  input: UnsafePointer<Float>, inputs: Int, weights: UnsafePointer<Float>, outputs: Int,
  outputGradient: UnsafePointer<Float>, weightGradient: UnsafeMutablePointer<Float>?,
  biasGradient: UnsafeMutablePointer<Float>?, inputGradient: UnsafeMutablePointer<Float>?
) {
  let x = UnsafeRawPointer(input)
  let w = UnsafeRawPointer(weights)
  let rowBytes = inputs * MemoryLayout<Float>.stride
  let whole = inputs / 16 * 16
  if let biasGradient {
    for o in 0..<outputs { biasGradient[o] += outputGradient[o] }
  }
  for i in whole..<inputs {
    var dx: Float = 0
    for o in 0..<outputs {
      if let weightGradient {
        weightGradient[o * inputs + i] = weightGradient[o * inputs + i].addingProduct(outputGradient[o], input[i])
      }
      dx = dx.addingProduct(outputGradient[o], weights[o * inputs + i])
    }
    inputGradient?[i] = dx
  }
  for i in stride(from: 0, to: whole * MemoryLayout<Float>.stride, by: 64) {
    let xi = x.loadUnaligned(fromByteOffset: i, as: SIMD16<Float>.self)
    var dx = SIMD16<Float>()
    for o in 0..<outputs {
      let dy = outputGradient[o]
      if let weightGradient {
        let dw = UnsafeMutableRawPointer(weightGradient)
        let g = dw.loadUnaligned(fromByteOffset: o * rowBytes + i, as: SIMD16<Float>.self)
        dw.storeBytes(of: g.addingProduct(dy, xi), toByteOffset: o * rowBytes + i, as: SIMD16<Float>.self)
      }
      if inputGradient != nil {
        dx = dx.addingProduct(dy, w.loadUnaligned(fromByteOffset: o * rowBytes + i, as: SIMD16<Float>.self))
      }
    }
    if let inputGradient {
      UnsafeMutableRawPointer(inputGradient).storeBytes(of: dx, toByteOffset: i, as: SIMD16<Float>.self)
    }
  }
}
