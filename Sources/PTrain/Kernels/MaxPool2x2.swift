/// The lane-wise maximum of two vectors as one compare and blend. (The standard library's
/// `pointwiseMax` follows IEEE `maximum` NaN rules lane by lane and does not vectorise.)
@inlinable @inline(__always)
public func lanewiseMax(_ a: SIMD16<Float>, _ b: SIMD16<Float>) -> SIMD16<Float> {
  a.replacing(with: b, where: b .> a)
}

// 2×2 max-pooling with stride 2 over one NHWC image; odd trailing rows and columns
// are dropped, as Keras and PyTorch do. Channels must be a multiple of 16.

/// Forward: each output pixel is the lane-wise max of its 2×2 window.
/// Cost: 3 compares per output element.
@inlinable
public func maxPool2x2Forward(
  _ input: UnsafePointer<Float>, height: Int, width: Int, channels: Int,
  output: UnsafeMutablePointer<Float>
) {
  let outHeight = height / 2
  let outWidth = width / 2
  for oy in 0..<outHeight {
    for ox in 0..<outWidth {
      let top = UnsafeRawPointer(input + ((2 * oy) * width + 2 * ox) * channels)
      let bottom = top + width * channels * MemoryLayout<Float>.stride
      let out = UnsafeMutableRawPointer(output + (oy * outWidth + ox) * channels)
      let right = channels * MemoryLayout<Float>.stride
      for c in stride(from: 0, to: channels * MemoryLayout<Float>.stride, by: 64) {
        let a = top.loadUnaligned(fromByteOffset: c, as: SIMD16<Float>.self)
        let b = top.loadUnaligned(fromByteOffset: c + right, as: SIMD16<Float>.self)
        let d = bottom.loadUnaligned(fromByteOffset: c, as: SIMD16<Float>.self)
        let e = bottom.loadUnaligned(fromByteOffset: c + right, as: SIMD16<Float>.self)
        out.storeBytes(
          of: lanewiseMax(lanewiseMax(a, b), lanewiseMax(d, e)), toByteOffset: c, as: SIMD16<Float>.self)
      }
    }
  }
}

/// Backward: routes each output gradient to the first window position (row-major) that
/// holds the max, and zeroes every other input gradient. With `throughReLU` the input is
/// a ReLU output and the gradient goes through that ReLU too: it is zero wherever the max
/// is not positive. Overwrites `inputGradient`. Cost: O(height · width · channels).
@inlinable
public func maxPool2x2Backward(
  input: UnsafePointer<Float>, output: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
  height: Int, width: Int, channels: Int, throughReLU: Bool = false,
  inputGradient: UnsafeMutablePointer<Float>
) {
  let outHeight = height / 2
  let outWidth = width / 2
  // Every window position is written below; only a dropped odd row or column is zeroed here.
  if width % 2 == 1 {
    for y in 0..<(2 * outHeight) {
      (inputGradient + (y * width + width - 1) * channels).update(repeating: 0, count: channels)
    }
  }
  if height % 2 == 1 {
    (inputGradient + (height - 1) * width * channels).update(repeating: 0, count: width * channels)
  }
  let right = channels * MemoryLayout<Float>.stride
  let down = width * channels * MemoryLayout<Float>.stride
  for oy in 0..<outHeight {
    for ox in 0..<outWidth {
      let first = ((2 * oy) * width + 2 * ox) * channels
      let x = UnsafeRawPointer(input + first)
      let dx = UnsafeMutableRawPointer(inputGradient + first)
      let pooled = UnsafeRawPointer(output + (oy * outWidth + ox) * channels)
      let dy = UnsafeRawPointer(outputGradient + (oy * outWidth + ox) * channels)
      for c in stride(from: 0, to: channels * MemoryLayout<Float>.stride, by: 64) {
        let m = pooled.loadUnaligned(fromByteOffset: c, as: SIMD16<Float>.self)
        var g = dy.loadUnaligned(fromByteOffset: c, as: SIMD16<Float>.self)
        if throughReLU { g.replace(with: 0, where: m .<= 0) }
        var taken = SIMDMask<SIMD16<Int32>>()
        @inline(__always) func route(_ offset: Int) {
          let hit = x.loadUnaligned(fromByteOffset: c + offset, as: SIMD16<Float>.self) .== m
          let mine = hit .& .!taken
          taken .|= hit
          dx.storeBytes(
            of: SIMD16<Float>().replacing(with: g, where: mine), toByteOffset: c + offset,
            as: SIMD16<Float>.self)
        }
        route(0)
        route(right)
        route(down)
        route(down + right)
      }
    }
  }
}
