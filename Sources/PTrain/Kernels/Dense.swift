// Fully connected layer. Weights are row-major [outputs][inputs]; `inputs` must be a
// multiple of 16.

/// `output[o] = bias[o] + Σ_i weights[o][i] · input[i]`. Cost: 2 · inputs · outputs FLOP.
@inlinable
public func denseForward(
  input: UnsafePointer<Float>, inputs: Int, weights: UnsafePointer<Float>,
  bias: UnsafePointer<Float>, outputs: Int, output: UnsafeMutablePointer<Float>
) {
  let x = UnsafeRawPointer(input)
  for o in 0..<outputs {
    let row = UnsafeRawPointer(weights + o * inputs)
    var acc = SIMD16<Float>()
    for i in stride(from: 0, to: inputs * MemoryLayout<Float>.stride, by: 64) {
      acc = acc.addingProduct(
        row.loadUnaligned(fromByteOffset: i, as: SIMD16<Float>.self),
        x.loadUnaligned(fromByteOffset: i, as: SIMD16<Float>.self))
    }
    output[o] = bias[o] + acc.sum()
  }
}

/// Backward: when `weightGradient` and `biasGradient` are given, accumulates
/// `dW[o][i] += dy[o] · x[i]` and `dB[o] += dy[o]`; when `inputGradient` is given,
/// overwrites it with `dx[i] = Σ_o dy[o] · W[o][i]`. Cost: 2 · inputs · outputs FLOP
/// for each of the two.
@inlinable
public func denseBackward(
  input: UnsafePointer<Float>, inputs: Int, weights: UnsafePointer<Float>, outputs: Int,
  outputGradient: UnsafePointer<Float>, weightGradient: UnsafeMutablePointer<Float>?,
  biasGradient: UnsafeMutablePointer<Float>?, inputGradient: UnsafeMutablePointer<Float>?
) {
  let x = UnsafeRawPointer(input)
  let bytes = inputs * MemoryLayout<Float>.stride
  if let inputGradient { inputGradient.update(repeating: 0, count: inputs) }
  for o in 0..<outputs {
    let dy = outputGradient[o]
    let w = UnsafeRawPointer(weights + o * inputs)
    if let weightGradient, let biasGradient {
      biasGradient[o] += dy
      let dw = UnsafeMutableRawPointer(weightGradient + o * inputs)
      for i in stride(from: 0, to: bytes, by: 64) {
        let xi = x.loadUnaligned(fromByteOffset: i, as: SIMD16<Float>.self)
        let g = dw.loadUnaligned(fromByteOffset: i, as: SIMD16<Float>.self)
        dw.storeBytes(of: g.addingProduct(dy, xi), toByteOffset: i, as: SIMD16<Float>.self)
      }
    }
    if let inputGradient {
      let dx = UnsafeMutableRawPointer(inputGradient)
      for i in stride(from: 0, to: bytes, by: 64) {
        let current = dx.loadUnaligned(fromByteOffset: i, as: SIMD16<Float>.self)
        dx.storeBytes(
          of: current.addingProduct(dy, w.loadUnaligned(fromByteOffset: i, as: SIMD16<Float>.self)),
          toByteOffset: i, as: SIMD16<Float>.self)
      }
    }
  }
}
