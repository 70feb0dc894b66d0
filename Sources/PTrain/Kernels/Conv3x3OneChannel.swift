// Direct 3×3 convolution of a one-channel image (conv1), 32 output channels at a time.
// With one input channel a filter block is 9 taps × 32 channels, 18 AVX-512 registers,
// so the forward pass keeps the filters and the weight gradient keeps its sums in
// registers for the whole image: no im2col matrix, no GEMM with k = 9. (With AVX2 that is
// 36 ymm registers of 16, and some spill; it still beat im2col + GEMM there.)
//
// Both add in the same order as the im2col + GEMM path (tap order for an output, pixel
// order for a weight), so they give the same bits.

/// One vector per tap of a 3×3 filter.
typealias NineLanes = (
  GemmLane, GemmLane, GemmLane, GemmLane, GemmLane, GemmLane, GemmLane, GemmLane, GemmLane
)

/// 9 taps × 32 channels of vectors: a filter block, or its gradient.
struct TapBlock {
  var low: NineLanes
  var high: NineLanes

  /// Loads taps `t` = 0…8 from `base + t · stride` (channels 0–15) and `+ 16` (16–31).
  @inline(__always)
  init(_ base: UnsafePointer<Float>, stride: Int) {
    let raw = UnsafeRawPointer(base)
    @inline(__always) func at(_ t: Int, _ half: Int) -> GemmLane {
      raw.loadUnaligned(fromByteOffset: (t * stride + 16 * half) * 4, as: GemmLane.self)
    }
    low = (at(0, 0), at(1, 0), at(2, 0), at(3, 0), at(4, 0), at(5, 0), at(6, 0), at(7, 0), at(8, 0))
    high = (at(0, 1), at(1, 1), at(2, 1), at(3, 1), at(4, 1), at(5, 1), at(6, 1), at(7, 1), at(8, 1))
  }

  /// Stores tap `t` to `base + t · stride` and `+ 16`.
  @inline(__always)
  func store(_ base: UnsafeMutablePointer<Float>, stride: Int) {
    let raw = UnsafeMutableRawPointer(base)
    @inline(__always) func put(_ taps: NineLanes, _ half: Int) {
      withUnsafeBytes(of: taps) { values in
        for t in 0..<9 {
          raw.storeBytes(
            of: values.loadUnaligned(fromByteOffset: t * 64, as: GemmLane.self),
            toByteOffset: (t * stride + 16 * half) * 4, as: GemmLane.self)
        }
      }
    }
    put(low, 0)
    put(high, 1)
  }
}

/// The 9 input pixels under the 3×3 window at `(oy, ox)` of a one-channel image.
@inline(__always)
func window(_ input: UnsafePointer<Float>, width: Int, _ oy: Int, _ ox: Int)
  -> (Float, Float, Float, Float, Float, Float, Float, Float, Float)
{
  let r0 = input + oy * width + ox
  let r1 = r0 + width
  let r2 = r1 + width
  return (r0[0], r0[1], r0[2], r1[0], r1[1], r1[2], r2[0], r2[1], r2[2])
}

/// Forward of a one-channel 3×3 valid convolution: `output[p][co] = bias[co] + Σ_t
/// x[p + t] · w[t][co]` (no bias when nil), adding taps in order, then `relu` when asked.
/// Needs `inChannels == 1` and `outChannels` a multiple of 32; for "same" padding, pass
/// a zero-bordered copy of the image. Cost: `shape.flops` FLOP, no scratch.
@_spi(Kernels) public func conv3x3OneChannelForward(
  input: UnsafePointer<Float>, shape s: Conv3x3Shape, weights: UnsafePointer<Float>,
  bias: UnsafePointer<Float>?, relu applyReLU: Bool, output: UnsafeMutablePointer<Float>
) {
  precondition(s.inChannels == 1 && s.outChannels % 32 == 0 && s.padding == 0, "conv3x3OneChannel: shape \(s)")
  let cout = s.outChannels
  for block in stride(from: 0, to: cout, by: 32) {
    let w = TapBlock(weights + block, stride: cout)
    let biasLow = bias.map { UnsafeRawPointer($0 + block).loadUnaligned(as: GemmLane.self) } ?? GemmLane()
    let biasHigh = bias.map { UnsafeRawPointer($0 + block + 16).loadUnaligned(as: GemmLane.self) } ?? GemmLane()
    for oy in 0..<s.outHeight {
      for ox in 0..<s.outWidth {
        let x = window(input, width: s.width, oy, ox)
        var low = biasLow.addingProduct(x.0, w.low.0)
        var high = biasHigh.addingProduct(x.0, w.high.0)
        low = low.addingProduct(x.1, w.low.1)
        high = high.addingProduct(x.1, w.high.1)
        low = low.addingProduct(x.2, w.low.2)
        high = high.addingProduct(x.2, w.high.2)
        low = low.addingProduct(x.3, w.low.3)
        high = high.addingProduct(x.3, w.high.3)
        low = low.addingProduct(x.4, w.low.4)
        high = high.addingProduct(x.4, w.high.4)
        low = low.addingProduct(x.5, w.low.5)
        high = high.addingProduct(x.5, w.high.5)
        low = low.addingProduct(x.6, w.low.6)
        high = high.addingProduct(x.6, w.high.6)
        low = low.addingProduct(x.7, w.low.7)
        high = high.addingProduct(x.7, w.high.7)
        low = low.addingProduct(x.8, w.low.8)
        high = high.addingProduct(x.8, w.high.8)
        let target = UnsafeMutableRawPointer(output + (oy * s.outWidth + ox) * cout + block)
        target.storeBytes(of: applyReLU ? relu(low) : low, as: GemmLane.self)
        target.storeBytes(of: applyReLU ? relu(high) : high, toByteOffset: 64, as: GemmLane.self)
      }
    }
  }
}

/// Weight and bias gradients of a one-channel 3×3 valid convolution, accumulated:
/// `dW[t][co] += Σ_p x[p + t] · dOutput[p][co]` over pixels in order, with the 18 sums
/// of a 32-channel block in registers, and `dB += Σ_p dOutput[p]`.
/// Cost: `shape.flops` FLOP, no scratch.
@_spi(Kernels) public func conv3x3OneChannelWeightGradient(
  input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, shape s: Conv3x3Shape,
  weightGradient: UnsafeMutablePointer<Float>, biasGradient: UnsafeMutablePointer<Float>?
) {
  precondition(s.inChannels == 1 && s.outChannels % 32 == 0 && s.padding == 0, "conv3x3OneChannel: shape \(s)")
  let cout = s.outChannels
  for block in stride(from: 0, to: cout, by: 32) {
    var g = TapBlock(weightGradient + block, stride: cout)
    for oy in 0..<s.outHeight {
      for ox in 0..<s.outWidth {
        let x = window(input, width: s.width, oy, ox)
        let source = UnsafeRawPointer(outputGradient + (oy * s.outWidth + ox) * cout + block)
        let dLow = source.loadUnaligned(as: GemmLane.self)
        let dHigh = source.loadUnaligned(fromByteOffset: 64, as: GemmLane.self)
        g.low.0 = g.low.0.addingProduct(x.0, dLow)
        g.high.0 = g.high.0.addingProduct(x.0, dHigh)
        g.low.1 = g.low.1.addingProduct(x.1, dLow)
        g.high.1 = g.high.1.addingProduct(x.1, dHigh)
        g.low.2 = g.low.2.addingProduct(x.2, dLow)
        g.high.2 = g.high.2.addingProduct(x.2, dHigh)
        g.low.3 = g.low.3.addingProduct(x.3, dLow)
        g.high.3 = g.high.3.addingProduct(x.3, dHigh)
        g.low.4 = g.low.4.addingProduct(x.4, dLow)
        g.high.4 = g.high.4.addingProduct(x.4, dHigh)
        g.low.5 = g.low.5.addingProduct(x.5, dLow)
        g.high.5 = g.high.5.addingProduct(x.5, dHigh)
        g.low.6 = g.low.6.addingProduct(x.6, dLow)
        g.high.6 = g.high.6.addingProduct(x.6, dHigh)
        g.low.7 = g.low.7.addingProduct(x.7, dLow)
        g.high.7 = g.high.7.addingProduct(x.7, dHigh)
        g.low.8 = g.low.8.addingProduct(x.8, dLow)
        g.high.8 = g.high.8.addingProduct(x.8, dHigh)
      }
    }
    g.store(weightGradient + block, stride: cout)
  }
  if let biasGradient { addColumnSums(of: outputGradient, rows: s.outPixels, columns: cout, to: biasGradient) }
}
