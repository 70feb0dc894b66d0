// Batch normalisation over the channels of one NHWC image (BatchNorm2d) or of one vector
// (BatchNorm1d, `pixels` 1). Training uses the statistics of the whole mini-batch: every
// image adds its sums to its shard's, the shards' sums are added in a fixed order (see
// `Trainer`), and every image is then normalised with the batch's mean and variance.
// Evaluation uses the running statistics. Channels run sixteen at a time, the rest one
// by one.

/// Adds one image's `Σ (x − shift)` and `Σ (x − shift)²` per channel to `sums[c]` and
/// `sums[channels + c]`, summing the image's pixels in Float in pixel order first. Shifting
/// by a value near the mean (the running mean) keeps `E[(x−K)²] − E[x−K]²` accurate.
/// Cost: 3 FLOP per value.
public func batchNormAddInputSums(
  _ x: UnsafePointer<Float>, pixels: Int, channels: Int, shift: UnsafePointer<Float>,
  sums: UnsafeMutablePointer<Double>
) {
  var c = 0
  while c + 16 <= channels {
    let k = UnsafeRawPointer(shift + c).loadUnaligned(as: SIMD16<Float>.self)
    var first = SIMD16<Float>()
    var second = SIMD16<Float>()
    for p in 0..<pixels {
      let d = UnsafeRawPointer(x + p * channels + c).loadUnaligned(as: SIMD16<Float>.self) - k
      first += d
      second = second.addingProduct(d, d)
    }
    for lane in 0..<16 {
      sums[c + lane] += Double(first[lane])
      sums[channels + c + lane] += Double(second[lane])
    }
    c += 16
  }
  while c < channels {
    var first: Float = 0
    var second: Float = 0
    for p in 0..<pixels {
      let d = x[p * channels + c] - shift[c]
      first += d
      second = second.addingProduct(d, d)
    }
    sums[c] += Double(first)
    sums[channels + c] += Double(second)
    c += 1
  }
}

/// `y = x · scale[c] + offset[c]` per channel, then `max(y, 0)` when `relu`: a batch
/// norm folded into one multiply-add (`scale = γ / √(var + ε)`, `offset = β − mean · scale`).
/// Cost: 2 FLOP per value.
public func batchNormApply(
  _ x: UnsafePointer<Float>, pixels: Int, channels: Int, scale: UnsafePointer<Float>, offset: UnsafePointer<Float>,
  relu applyReLU: Bool, output: UnsafeMutablePointer<Float>
) {
  var c = 0
  while c + 16 <= channels {
    let a = UnsafeRawPointer(scale + c).loadUnaligned(as: SIMD16<Float>.self)
    let b = UnsafeRawPointer(offset + c).loadUnaligned(as: SIMD16<Float>.self)
    for p in 0..<pixels {
      let v = UnsafeRawPointer(x + p * channels + c).loadUnaligned(as: SIMD16<Float>.self)
      let y = b.addingProduct(v, a)
      UnsafeMutableRawPointer(output + p * channels + c).storeBytes(
        of: applyReLU ? relu(y) : y, as: SIMD16<Float>.self)
    }
    c += 16
  }
  while c < channels {
    for p in 0..<pixels {
      let y = offset[c].addingProduct(x[p * channels + c], scale[c])
      output[p * channels + c] = applyReLU ? max(y, 0) : y
    }
    c += 1
  }
}

/// Adds one image's `Σ dy` and `Σ dy · x̂` per channel (`x̂ = (x − mean) · inverseDeviation`)
/// to `sums[c]` and `sums[channels + c]`, summing the image's pixels in order first.
/// Cost: 4 FLOP per value.
public func batchNormAddGradientSums(
  outputGradient dy: UnsafePointer<Float>, input x: UnsafePointer<Float>, pixels: Int, channels: Int,
  mean: UnsafePointer<Float>, inverseDeviation: UnsafePointer<Float>, sums: UnsafeMutablePointer<Float>
) {
  var c = 0
  while c + 16 <= channels {
    let m = UnsafeRawPointer(mean + c).loadUnaligned(as: SIMD16<Float>.self)
    let s = UnsafeRawPointer(inverseDeviation + c).loadUnaligned(as: SIMD16<Float>.self)
    var first = SIMD16<Float>()
    var second = SIMD16<Float>()
    for p in 0..<pixels {
      let g = UnsafeRawPointer(dy + p * channels + c).loadUnaligned(as: SIMD16<Float>.self)
      let v = UnsafeRawPointer(x + p * channels + c).loadUnaligned(as: SIMD16<Float>.self)
      first += g
      second = second.addingProduct(g, (v - m) * s)
    }
    let target = UnsafeMutableRawPointer(sums + c)
    target.storeBytes(of: target.loadUnaligned(as: SIMD16<Float>.self) + first, as: SIMD16<Float>.self)
    let other = UnsafeMutableRawPointer(sums + channels + c)
    other.storeBytes(of: other.loadUnaligned(as: SIMD16<Float>.self) + second, as: SIMD16<Float>.self)
    c += 16
  }
  while c < channels {
    var first: Float = 0
    var second: Float = 0
    for p in 0..<pixels {
      let g = dy[p * channels + c]
      first += g
      second = second.addingProduct(g, (x[p * channels + c] - mean[c]) * inverseDeviation[c])
    }
    sums[c] += first
    sums[channels + c] += second
    c += 1
  }
}

/// The input gradient of a batch norm in training, from the batch's sums (`sums[c]` =
/// Σ dy, `sums[channels + c]` = Σ dy · x̂ over all `batchCount` values of the channel):
/// `dx = γ · inverseDeviation · (dy − Σdy / n − x̂ · Σdy·x̂ / n)`, sixteen channels at a
/// time pixel by pixel. Overwrites `inputGradient`. Cost: 6 FLOP per value.
public func batchNormInputGradient(
  outputGradient dy: UnsafePointer<Float>, input x: UnsafePointer<Float>, pixels: Int, channels: Int,
  mean: UnsafePointer<Float>, inverseDeviation: UnsafePointer<Float>, gamma: UnsafePointer<Float>,
  sums: UnsafePointer<Float>, batchCount: Int, inputGradient dx: UnsafeMutablePointer<Float>
) {
  let inverseCount = 1 / Float(batchCount)
  var c = 0
  while c + 16 <= channels {
    @inline(__always) func load(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
      UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
    }
    let meanGradient = load(sums + c) * inverseCount
    let s = load(inverseDeviation + c)
    // dx = factor · dy + (x − m) · slope + shift, with the per-channel terms folded.
    let factor = load(gamma + c) * s
    let slope = -factor * s * (load(sums + channels + c) * inverseCount)
    let m = load(mean + c)
    let shift = -factor * meanGradient
    for p in 0..<pixels {
      let i = p * channels + c
      let value = shift.addingProduct(factor, load(dy + i)).addingProduct(load(x + i) - m, slope)
      UnsafeMutableRawPointer(dx + i).storeBytes(of: value, as: SIMD16<Float>.self)
    }
    c += 16
  }
  while c < channels {
    let meanGradient = sums[c] * inverseCount
    let meanProduct = sums[channels + c] * inverseCount
    let factor = gamma[c] * inverseDeviation[c]
    let m = mean[c]
    let s = inverseDeviation[c]
    for p in 0..<pixels {
      let i = p * channels + c
      dx[i] = factor * (dy[i] - meanGradient - (x[i] - m) * s * meanProduct)
    }
    c += 1
  }
}
