/// The lane-wise maximum of two vectors as one compare and blend. (The standard library's
/// `pointwiseMax` follows IEEE `maximum` NaN rules lane by lane and does not vectorise.)
@inline(__always)
package func lanewiseMax(_ a: SIMD16<Float>, _ b: SIMD16<Float>) -> SIMD16<Float> {
  a.replacing(with: b, where: b .> a)
}

// 2×2 max-pooling with stride 2 over one NHWC image; odd trailing rows and columns
// are dropped, as Keras and PyTorch do. Channels must be a multiple of 16.

/// Forward: each output pixel is the lane-wise max of its 2×2 window; with `normalizing`,
/// of the window's values after that BatchNorm (and ReLU), whose output is then never
/// stored. Cost: 3 compares per output element (and 4 multiply-adds with `normalizing`).
@_spi(Kernels) public func maxPool2x2Forward(
  _ input: UnsafePointer<Float>, height: Int, width: Int, channels: Int,
  output: UnsafeMutablePointer<Float>, normalizing: FoldedBatchNorm? = nil
) {
  if let normalizing {
    maxPool2x2Forward(input, height: height, width: width, channels: channels, output: output) {
      normalizing.apply($0, channel: $1)
    }
  } else {
    maxPool2x2Forward(input, height: height, width: width, channels: channels, output: output) { x, _ in x }
  }
}

/// `maxPool2x2Forward` over the values `value(x, c)` of the loaded 16 channels from `c`,
/// compiled once per caller's closure.
@inline(__always) private func maxPool2x2Forward(
  _ input: UnsafePointer<Float>, height: Int, width: Int, channels: Int, output: UnsafeMutablePointer<Float>,
  value: (SIMD16<Float>, Int) -> SIMD16<Float>
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
        let a = value(top.loadUnaligned(fromByteOffset: c, as: SIMD16<Float>.self), c / 4)
        let b = value(top.loadUnaligned(fromByteOffset: c + right, as: SIMD16<Float>.self), c / 4)
        let d = value(bottom.loadUnaligned(fromByteOffset: c, as: SIMD16<Float>.self), c / 4)
        let e = value(bottom.loadUnaligned(fromByteOffset: c + right, as: SIMD16<Float>.self), c / 4)
        out.storeBytes(
          of: lanewiseMax(lanewiseMax(a, b), lanewiseMax(d, e)), toByteOffset: c, as: SIMD16<Float>.self)
      }
    }
  }
}

/// Backward: routes each output gradient to the first window position (row-major) that
/// holds the max, and zeroes every other input gradient. With `throughReLU` the input is
/// a ReLU output and the gradient goes through that ReLU too: it is zero wherever the max
/// is not positive. With `normalizing`, `input` is that BatchNorm's input, as in
/// `maxPool2x2Forward`, and `inputGradient` the gradient at the BatchNorm's output.
/// Overwrites `inputGradient`. Cost: O(height · width · channels).
@_spi(Kernels) public func maxPool2x2Backward(
  input: UnsafePointer<Float>, output: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
  height: Int, width: Int, channels: Int, throughReLU: Bool = false,
  inputGradient: UnsafeMutablePointer<Float>, normalizing: FoldedBatchNorm? = nil
) {
  if let normalizing {
    maxPool2x2Backward(
      input: input, output: output, outputGradient: outputGradient, height: height, width: width,
      channels: channels, throughReLU: throughReLU, inputGradient: inputGradient
    ) { normalizing.apply($0, channel: $1) }
  } else {
    maxPool2x2Backward(
      input: input, output: output, outputGradient: outputGradient, height: height, width: width,
      channels: channels, throughReLU: throughReLU, inputGradient: inputGradient
    ) { x, _ in x }
  }
}

/// `maxPool2x2Backward` over the values `value(x, c)` of the loaded 16 channels from `c`,
/// compiled once per caller's closure.
@inline(__always) private func maxPool2x2Backward(
  input: UnsafePointer<Float>, output: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
  height: Int, width: Int, channels: Int, throughReLU: Bool, inputGradient: UnsafeMutablePointer<Float>,
  value: (SIMD16<Float>, Int) -> SIMD16<Float>
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
        let routed = maxPool2x2Route(
          window: x, right: right, down: down, byteOffset: c, max: pooled, gradient: dy, throughReLU: throughReLU,
          value: value)
        dx.storeBytes(of: routed.gradients.0, toByteOffset: c, as: SIMD16<Float>.self)
        dx.storeBytes(of: routed.gradients.1, toByteOffset: c + right, as: SIMD16<Float>.self)
        dx.storeBytes(of: routed.gradients.2, toByteOffset: c + down, as: SIMD16<Float>.self)
        dx.storeBytes(of: routed.gradients.3, toByteOffset: c + down + right, as: SIMD16<Float>.self)
      }
    }
  }
}

/// One 2×2 window's part of `maxPool2x2Backward`, for the 16 channels at byte offset `c`:
/// the window's four input vectors (top left, top right, bottom left, bottom right, `right`
/// and `down` bytes apart from `window`) and the gradients routed to them, the pooled
/// gradient at the first position (row-major) whose value `value(x, channel)` equals the
/// pooled max, zero elsewhere (everywhere, with `throughReLU`, where the max is not positive).
/// Cost: 4 compares per lane, plus `value`'s.
@inline(__always) func maxPool2x2Route(
  window x: UnsafeRawPointer, right: Int, down: Int, byteOffset c: Int, max pooled: UnsafeRawPointer,
  gradient dy: UnsafeRawPointer, throughReLU: Bool, value: (SIMD16<Float>, Int) -> SIMD16<Float>
) -> (inputs: PoolWindow, gradients: PoolWindow) {
  let m = pooled.loadUnaligned(fromByteOffset: c, as: SIMD16<Float>.self)
  var g = dy.loadUnaligned(fromByteOffset: c, as: SIMD16<Float>.self)
  if throughReLU { g.replace(with: 0, where: m .<= 0) }
  let inputs = (
    x.loadUnaligned(fromByteOffset: c, as: SIMD16<Float>.self),
    x.loadUnaligned(fromByteOffset: c + right, as: SIMD16<Float>.self),
    x.loadUnaligned(fromByteOffset: c + down, as: SIMD16<Float>.self),
    x.loadUnaligned(fromByteOffset: c + down + right, as: SIMD16<Float>.self)
  )
  var taken = SIMDMask<SIMD16<Int32>>()
  @inline(__always) func route(_ input: SIMD16<Float>) -> SIMD16<Float> {
    let hit = value(input, c / 4) .== m
    let mine = hit .& .!taken
    taken .|= hit
    return SIMD16<Float>().replacing(with: g, where: mine)
  }
  let first = route(inputs.0)
  let second = route(inputs.1)
  let third = route(inputs.2)
  return (inputs, (first, second, third, route(inputs.3)))
}

/// Four vectors of one 2×2 window, row-major.
typealias PoolWindow = (SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>)

// Pooling of any window and stride, and global average pooling, over one NHWC image, for
// the shapes the 2×2 kernels above do not serve (a window of 3, a stride other than the
// window, channels that are not a multiple of 16). Windows that would reach past the
// image are dropped, as PyTorch's floor mode does.

/// The geometry of one pooling layer over one image.
@_spi(Kernels) public struct PoolShape: Sendable, Equatable {
  public let height: Int, width: Int, channels: Int, size: Int, stride: Int

  public init(height: Int, width: Int, channels: Int, size: Int, stride: Int) {
    self.height = height
    self.width = width
    self.channels = channels
    self.size = size
    self.stride = stride
  }

  public var outHeight: Int { (height - size) / stride + 1 }
  public var outWidth: Int { (width - size) / stride + 1 }
  /// Whether the 2×2, stride-2, 16-channel kernels above serve this shape.
  package var isTwoByTwo: Bool { size == 2 && stride == 2 && channels % 16 == 0 }
}

/// Max-pooling forward: each output is the maximum of its window. Cost: size² compares per output.
/// With `normalizing` (2×2 windows only, `PoolShape.isTwoByTwo`), as `maxPool2x2Forward`.
@_spi(Kernels) public func maxPoolForward(
  _ input: UnsafePointer<Float>, shape s: PoolShape, output: UnsafeMutablePointer<Float>,
  normalizing: FoldedBatchNorm? = nil
) {
  if s.isTwoByTwo {
    maxPool2x2Forward(
      input, height: s.height, width: s.width, channels: s.channels, output: output, normalizing: normalizing)
    return
  }
  precondition(normalizing == nil, "maxPoolForward: a folded BatchNorm needs 2x2 windows and 16-channel blocks")
  let c = s.channels
  for oy in 0..<s.outHeight {
    for ox in 0..<s.outWidth {
      let out = output + (oy * s.outWidth + ox) * c
      out.update(from: input + (oy * s.stride * s.width + ox * s.stride) * c, count: c)
      for ky in 0..<s.size {
        for kx in 0..<s.size {
          let x = input + ((oy * s.stride + ky) * s.width + ox * s.stride + kx) * c
          for channel in 0..<c where x[channel] > out[channel] { out[channel] = x[channel] }
        }
      }
    }
  }
}

/// Max-pooling backward: each output's gradient goes to the first position (row-major) of
/// its window that holds the maximum, through the ReLU that produced the input when
/// `throughReLU` (zero wherever the maximum is not positive). Windows may overlap, so
/// gradients are added; `inputGradient` is overwritten. With `normalizing` (2×2 windows
/// only), as `maxPool2x2Backward`. Cost: O(input + size² · output).
@_spi(Kernels) public func maxPoolBackward(
  input: UnsafePointer<Float>, output: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, shape s: PoolShape,
  throughReLU: Bool, inputGradient: UnsafeMutablePointer<Float>, normalizing: FoldedBatchNorm? = nil
) {
  if s.isTwoByTwo {
    maxPool2x2Backward(
      input: input, output: output, outputGradient: outputGradient, height: s.height, width: s.width,
      channels: s.channels, throughReLU: throughReLU, inputGradient: inputGradient, normalizing: normalizing)
    return
  }
  precondition(normalizing == nil, "maxPoolBackward: a folded BatchNorm needs 2x2 windows and 16-channel blocks")
  let c = s.channels
  inputGradient.update(repeating: 0, count: s.height * s.width * c)
  for oy in 0..<s.outHeight {
    for ox in 0..<s.outWidth {
      let o = (oy * s.outWidth + ox) * c
      for channel in 0..<c {
        let m = output[o + channel]
        let g = outputGradient[o + channel]
        if throughReLU && m <= 0 { continue }
        search: for ky in 0..<s.size {
          for kx in 0..<s.size {
            let i = ((oy * s.stride + ky) * s.width + ox * s.stride + kx) * c + channel
            if input[i] == m {
              inputGradient[i] += g
              break search
            }
          }
        }
      }
    }
  }
}

/// Average-pooling forward: each output is the mean of its window (the sum times
/// 1 / size²). Cost: size² adds per output.
@_spi(Kernels) public func avgPoolForward(_ input: UnsafePointer<Float>, shape s: PoolShape, output: UnsafeMutablePointer<Float>) {
  let c = s.channels
  let scale = 1 / Float(s.size * s.size)
  for oy in 0..<s.outHeight {
    for ox in 0..<s.outWidth {
      let out = output + (oy * s.outWidth + ox) * c
      out.update(repeating: 0, count: c)
      for ky in 0..<s.size {
        for kx in 0..<s.size {
          addInPlace(out, input + ((oy * s.stride + ky) * s.width + ox * s.stride + kx) * c, count: c)
        }
      }
      for channel in 0..<c { out[channel] *= scale }
    }
  }
}

/// Average-pooling backward: each output's gradient, times 1 / size², is added to every
/// position of its window. Overwrites `inputGradient`. Cost: size² adds per output.
@_spi(Kernels) public func avgPoolBackward(
  outputGradient: UnsafePointer<Float>, shape s: PoolShape, inputGradient: UnsafeMutablePointer<Float>
) {
  let c = s.channels
  let scale = 1 / Float(s.size * s.size)
  inputGradient.update(repeating: 0, count: s.height * s.width * c)
  for oy in 0..<s.outHeight {
    for ox in 0..<s.outWidth {
      let g = outputGradient + (oy * s.outWidth + ox) * c
      for ky in 0..<s.size {
        for kx in 0..<s.size {
          let d = inputGradient + ((oy * s.stride + ky) * s.width + ox * s.stride + kx) * c
          for channel in 0..<c { d[channel] += g[channel] * scale }
        }
      }
    }
  }
}

/// Global average pooling: `output[c]` is the mean of channel c over all `pixels`.
/// Cost: one add per input value.
@_spi(Kernels) public func globalAvgPoolForward(
  _ input: UnsafePointer<Float>, pixels: Int, channels: Int, output: UnsafeMutablePointer<Float>
) {
  output.update(repeating: 0, count: channels)
  for p in 0..<pixels { addInPlace(output, input + p * channels, count: channels) }
  let scale = 1 / Float(pixels)
  for c in 0..<channels { output[c] *= scale }
}

/// Global average pooling backward: every pixel of channel c gets `dOutput[c] / pixels`.
/// Overwrites `inputGradient`. Cost: one store per input value.
@_spi(Kernels) public func globalAvgPoolBackward(
  outputGradient: UnsafePointer<Float>, pixels: Int, channels: Int, inputGradient: UnsafeMutablePointer<Float>
) {
  let scale = 1 / Float(pixels)
  for p in 0..<pixels {
    for c in 0..<channels { inputGradient[p * channels + c] = outputGradient[c] * scale }
  }
}
