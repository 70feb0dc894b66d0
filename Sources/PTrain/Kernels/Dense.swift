// Fully connected layer. Weights are row-major [outputs][inputs]; `inputs` must be a
// multiple of 16.

/// `output[o] = bias[o] + Σ_i weights[o][i] · input[i]`, five outputs at a time so their
/// sums form independent chains (each output still adds in `i` order).
/// Cost: 2 · inputs · outputs FLOP.
@inlinable
public func denseForward(
  input: UnsafePointer<Float>, inputs: Int, weights: UnsafePointer<Float>,
  bias: UnsafePointer<Float>, outputs: Int, output: UnsafeMutablePointer<Float>
) {
  let x = UnsafeRawPointer(input)
  let bytes = inputs * MemoryLayout<Float>.stride
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
      if first + r < outputs { output[first + r] = bias[first + r] + sum.sum() }
    }
    store(a0, 0)
    store(a1, 1)
    store(a2, 2)
    store(a3, 3)
    store(a4, 4)
    first += 5
  }
}

/// Backward: when `weightGradient` and `biasGradient` are given, accumulates
/// `dW[o][i] += dy[o] · x[i]` and `dB[o] += dy[o]`; when `inputGradient` is given,
/// overwrites it with `dx[i] = Σ_o dy[o] · W[o][i]`, adding in `o` order. One pass over
/// `i`, each `dx` vector summed in a register. Cost: 2 · inputs · outputs FLOP for each
/// of the two.
@inlinable
public func denseBackward(
  input: UnsafePointer<Float>, inputs: Int, weights: UnsafePointer<Float>, outputs: Int,
  outputGradient: UnsafePointer<Float>, weightGradient: UnsafeMutablePointer<Float>?,
  biasGradient: UnsafeMutablePointer<Float>?, inputGradient: UnsafeMutablePointer<Float>?
) {
  let x = UnsafeRawPointer(input)
  let w = UnsafeRawPointer(weights)
  let rowBytes = inputs * MemoryLayout<Float>.stride
  if let biasGradient, weightGradient != nil {
    for o in 0..<outputs { biasGradient[o] += outputGradient[o] }
  }
  for i in stride(from: 0, to: rowBytes, by: 64) {
    let xi = x.loadUnaligned(fromByteOffset: i, as: SIMD16<Float>.self)
    var dx = SIMD16<Float>()
    for o in 0..<outputs {
      let dy = outputGradient[o]
      if let weightGradient, biasGradient != nil {
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
