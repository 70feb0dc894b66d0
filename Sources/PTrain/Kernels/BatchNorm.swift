// Batch normalisation over the channels of one NHWC image (BatchNorm2d) or of one vector
// (BatchNorm1d, `pixels` 1). Training uses the statistics of the whole mini-batch: every
// image adds its sums to its shard's, the shards' sums are added in a fixed order (see
// `Trainer`), and every image is then normalised with the batch's mean and variance.
// Evaluation uses the running statistics. Channels run sixteen at a time, pixel after
// pixel so that the image streams through once, with each block's per-channel terms or
// sums kept beside; the channels left over run one by one.

@inline(__always) func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
  UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
}

@inline(__always) func store16(_ value: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) {
  UnsafeMutableRawPointer(p).storeBytes(of: value, as: SIMD16<Float>.self)
}

/// A BatchNorm's folded per-channel scale and offset (and the ReLU after it) that the layer
/// above applies to the BatchNorm's input as it reads it, so that the BatchNorm's output is
/// never stored (see `Replica`): a Winograd convolution as it copies its input into its
/// padded buffer, a 2×2 max-pool as it loads each window.
@_spi(Kernels) public struct FoldedBatchNorm {
  public let scale: UnsafePointer<Float>, offset: UnsafePointer<Float>
  public let relu: Bool

  public init(scale: UnsafePointer<Float>, offset: UnsafePointer<Float>, relu: Bool) {
    self.scale = scale
    self.offset = offset
    self.relu = relu
  }

  /// `x · scale + offset` (then the ReLU) for the 16 channels from `channel`: the bits
  /// `batchNormApply` stores.
  @inline(__always) func apply(_ x: SIMD16<Float>, channel: Int) -> SIMD16<Float> {
    let y = load16(offset + channel).addingProduct(x, load16(scale + channel))
    return relu ? PTrain.relu(y) : y
  }
}

/// Where a layer adds one image's `Σ (x − shift)` and `Σ (x − shift)²` per channel of a
/// BatchNorm's input as it stores that input (see `batchNormAddInputSums`): the shift (the
/// running mean) and the sums (2 · channels Doubles).
@_spi(Kernels) public struct BatchNormInputSums: WinogradOutputRows {
  public let shift: UnsafePointer<Float>, sums: UnsafeMutablePointer<Double>

  public init(shift: UnsafePointer<Float>, sums: UnsafeMutablePointer<Double>) {
    self.shift = shift
    self.sums = sums
  }

  /// Adds each written row's pixels to the image's sums, in pixel order.
  @inline(__always) package func forImage(
    _ image: Int, output: UnsafeMutablePointer<Float>, height: Int, width: Int, channels: Int,
    _ transform: ((Range<Int>) -> Void) -> Void
  ) {
    withImageTotals(channels: channels) { totals in
      transform { rows in
        addPixels(output, (rows.lowerBound * width)..<(rows.upperBound * width), channels: channels, totals: totals)
      }
    }
  }

  /// Runs `body` with an image's running Float totals (2 · ⌊channels / 16⌋ vectors, zero),
  /// which `addPixels` adds to, then adds them to `sums`; the channels past the last block
  /// are not summed. Cost: O(channels) besides `body`.
  @inline(__always) func withImageTotals(channels: Int, _ body: (UnsafeMutablePointer<SIMD16<Float>>) -> Void) {
    let blocks = channels / 16
    withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: 2 * blocks) { buffer in
      let totals = buffer.baseAddress!
      totals.initialize(repeating: SIMD16<Float>(), count: 2 * blocks)
      body(totals)
      for block in 0..<blocks {
        for lane in 0..<16 {
          sums[block * 16 + lane] += Double(totals[block][lane])
          sums[channels + block * 16 + lane] += Double(totals[blocks + block][lane])
        }
      }
    }
  }

  /// Adds `x − shift` and its square for the pixels `pixels` of `x`, in order, to an
  /// image's `totals` (see `withImageTotals`), 16 channels at a time (`addInRegisters`).
  /// Cost: 3 FLOP per value.
  @inline(__always) func addPixels(
    _ x: UnsafePointer<Float>, _ pixels: Range<Int>, channels: Int, totals: UnsafeMutablePointer<SIMD16<Float>>
  ) {
    addInRegisters(pixels, channels: channels, totals: totals) { p, c, sum, square in
      let d = load16(x + p * channels + c) - load16(shift + c)
      sum += d
      square = square.addingProduct(d, d)
    }
  }
}

/// Runs `step(p, c, &first, &second)` for each pixel `p` of `pixels`, in order, and each
/// 16-channel block from channel `c`, with the block's two running totals (`totals[b]` and
/// `totals[blocks + b]` of block `b`) held in registers meanwhile: the blocks go in runs of
/// 4, then 2, then 1 (each run's length a constant once inlined), 8 dependency chains at
/// most, instead of a load and a store per step. The channels past the last block are left
/// out. Cost: `step`'s per value.
@inline(__always) func addInRegisters(
  _ pixels: Range<Int>, channels: Int, totals: UnsafeMutablePointer<SIMD16<Float>>,
  _ step: (_ p: Int, _ c: Int, _ first: inout SIMD16<Float>, _ second: inout SIMD16<Float>) -> Void
) {
  let blocks = channels / 16
  /// The pixels for the blocks `run` (1, 2 or 4 of them).
  @inline(__always) func add(_ run: Range<Int>) {
    let count = run.count
    @inline(__always) func total(_ k: Int) -> (SIMD16<Float>, SIMD16<Float>) {
      k < count ? (totals[run.lowerBound + k], totals[blocks + run.lowerBound + k]) : (SIMD16<Float>(), SIMD16<Float>())
    }
    var (s0, q0) = total(0)
    var (s1, q1) = total(1)
    var (s2, q2) = total(2)
    var (s3, q3) = total(3)
    for p in pixels {
      let c = 16 * run.lowerBound
      step(p, c, &s0, &q0)
      if count > 1 { step(p, c + 16, &s1, &q1) }
      if count > 2 {
        step(p, c + 32, &s2, &q2)
        step(p, c + 48, &s3, &q3)
      }
    }
    @inline(__always) func keep(_ k: Int, _ s: SIMD16<Float>, _ q: SIMD16<Float>) {
      guard k < count else { return }
      totals[run.lowerBound + k] = s
      totals[blocks + run.lowerBound + k] = q
    }
    keep(0, s0, q0)
    keep(1, s1, q1)
    keep(2, s2, q2)
    keep(3, s3, q3)
  }
  var block = 0
  while block + 4 <= blocks {
    add(block..<(block + 4))
    block += 4
  }
  if block + 2 <= blocks {
    add(block..<(block + 2))
    block += 2
  }
  if block < blocks { add(block..<(block + 1)) }
}

/// Adds one image's `Σ (x − shift)` and `Σ (x − shift)²` per channel to `sums[c]` and
/// `sums[channels + c]`, summing the image's pixels in Float in pixel order first. Shifting
/// by a value near the mean (the running mean) keeps `E[(x−K)²] − E[x−K]²` accurate.
/// Cost: 3 FLOP per value.
@_spi(Kernels) public func batchNormAddInputSums(
  _ x: UnsafePointer<Float>, pixels: Int, channels: Int, shift: UnsafePointer<Float>,
  sums: UnsafeMutablePointer<Double>
) {
  let adding = BatchNormInputSums(shift: shift, sums: sums)
  adding.withImageTotals(channels: channels) { totals in
    adding.addPixels(x, 0..<pixels, channels: channels, totals: totals)
  }
  var c = channels / 16 * 16
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
@_spi(Kernels) public func batchNormApply(
  _ x: UnsafePointer<Float>, pixels: Int, channels: Int, scale: UnsafePointer<Float>, offset: UnsafePointer<Float>,
  relu applyReLU: Bool, output: UnsafeMutablePointer<Float>
) {
  let blocks = channels / 16
  let folded = FoldedBatchNorm(scale: scale, offset: offset, relu: applyReLU)
  for p in 0..<pixels {
    for block in 0..<blocks {
      let i = p * channels + block * 16
      store16(folded.apply(load16(x + i), channel: block * 16), output + i)
    }
  }
  var c = blocks * 16
  while c < channels {
    for p in 0..<pixels {
      let y = offset[c].addingProduct(x[p * channels + c], scale[c])
      output[p * channels + c] = applyReLU ? max(y, 0) : y
    }
    c += 1
  }
}

/// `batchNormApply` of `x`, plus `shortcut`, through a ReLU with `relu`: a residual
/// block's addition that applies the BatchNorm ending its body, with the bits of applying
/// it and then adding (`addForward`). `output` may be `shortcut`. Cost: 3 FLOP per value.
@_spi(Kernels) public func batchNormApplyAdding(
  _ x: UnsafePointer<Float>, _ shortcut: UnsafePointer<Float>, pixels: Int, channels: Int,
  scale: UnsafePointer<Float>, offset: UnsafePointer<Float>, relu applyReLU: Bool, output: UnsafeMutablePointer<Float>
) {
  let blocks = channels / 16
  let folded = FoldedBatchNorm(scale: scale, offset: offset, relu: false)
  for p in 0..<pixels {
    for block in 0..<blocks {
      let i = p * channels + block * 16
      let sum = folded.apply(load16(x + i), channel: block * 16) + load16(shortcut + i)
      store16(applyReLU ? relu(sum) : sum, output + i)
    }
  }
  var c = blocks * 16
  while c < channels {
    for p in 0..<pixels {
      let sum = offset[c].addingProduct(x[p * channels + c], scale[c]) + shortcut[p * channels + c]
      output[p * channels + c] = applyReLU ? max(sum, 0) : sum
    }
    c += 1
  }
}

/// The backward of a ReLU after a batch norm whose output was never stored: zeroes
/// `gradient` where `x · scale[c] + offset[c] ≤ 0`, the value `batchNormApply` computes
/// from `x`, so the same elements as `reluBackwardInPlace` on its output.
/// Cost: 2 FLOP per value.
@_spi(Kernels) public func reluBackwardThroughBatchNorm(
  _ gradient: UnsafeMutablePointer<Float>, input x: UnsafePointer<Float>, pixels: Int, channels: Int,
  scale: UnsafePointer<Float>, offset: UnsafePointer<Float>
) {
  let blocks = channels / 16
  let folded = FoldedBatchNorm(scale: scale, offset: offset, relu: false)
  for p in 0..<pixels {
    for block in 0..<blocks {
      let i = p * channels + block * 16
      let y = folded.apply(load16(x + i), channel: block * 16)
      store16(load16(gradient + i).replacing(with: 0, where: y .<= 0), gradient + i)
    }
  }
  var c = blocks * 16
  while c < channels {
    for p in 0..<pixels where offset[c].addingProduct(x[p * channels + c], scale[c]) <= 0 {
      gradient[p * channels + c] = 0
    }
    c += 1
  }
}

/// Adds one image's `Σ dy` and `Σ dy · x̂` per channel (`x̂ = (x − mean) · inverseDeviation`)
/// to `sums[c]` and `sums[channels + c]`, summing the image's pixels in order first.
/// Cost: 4 FLOP per value.
@_spi(Kernels) public func batchNormAddGradientSums(
  outputGradient dy: UnsafePointer<Float>, input x: UnsafePointer<Float>, pixels: Int, channels: Int,
  mean: UnsafePointer<Float>, inverseDeviation: UnsafePointer<Float>, sums: UnsafeMutablePointer<Float>
) {
  let blocks = channels / 16
  withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: 2 * blocks) { totals in
    totals.initialize(repeating: SIMD16<Float>())
    for p in 0..<pixels {
      for block in 0..<blocks {
        let c = block * 16
        let g = load16(dy + p * channels + c)
        totals[block] += g
        totals[blocks + block] = totals[blocks + block].addingProduct(
          g, (load16(x + p * channels + c) - load16(mean + c)) * load16(inverseDeviation + c))
      }
    }
    for block in 0..<blocks {
      store16(load16(sums + block * 16) + totals[block], sums + block * 16)
      store16(load16(sums + channels + block * 16) + totals[blocks + block], sums + channels + block * 16)
    }
  }
  var c = blocks * 16
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

/// The per-channel terms of a BatchNorm's input gradient in training (see
/// `batchNormInputGradient`), sixteen channels to a block:
/// `dx = shift + factor · dy + (x − mean) · slope`.
struct BatchNormGradientTerms {
  /// Each block's `factor`, then each block's `slope`.
  let factorSlope: UnsafeMutableBufferPointer<SIMD16<Float>>
  /// Each block's `mean`, then each block's `shift`.
  let meanShift: UnsafeMutableBufferPointer<SIMD16<Float>>
  let blocks: Int

  /// `dx` of the 16 channels of `block` from their `dy` and `x`. Cost: 2 FMA, 1 subtract.
  @inline(__always) func inputGradient(dy: SIMD16<Float>, x: SIMD16<Float>, block: Int) -> SIMD16<Float> {
    meanShift[blocks + block].addingProduct(factorSlope[block], dy).addingProduct(
      x - meanShift[block], factorSlope[blocks + block])
  }
}

/// Runs `body` with the terms of the 16-channel blocks of a BatchNorm's input gradient
/// (`sums[c]` = Σ dy, `sums[channels + c]` = Σ dy · x̂ over `batchCount` values), in
/// temporary memory (two buffers of 2 · ⌊channels / 16⌋ vectors, which stay on the stack up
/// to 128 channels); the channels past the last block are left out. Cost: O(channels).
@inline(__always) func withBatchNormGradientTerms<R>(
  channels: Int, mean: UnsafePointer<Float>, inverseDeviation: UnsafePointer<Float>, gamma: UnsafePointer<Float>,
  sums: UnsafePointer<Float>, batchCount: Int, _ body: (BatchNormGradientTerms) -> R
) -> R {
  let inverseCount = 1 / Float(batchCount)
  let blocks = channels / 16
  return withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: 2 * blocks) { factorSlope in
    withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: 2 * blocks) { meanShift in
      for block in 0..<blocks {
        let c = block * 16
        let meanGradient = load16(sums + c) * inverseCount
        let s = load16(inverseDeviation + c)
        let factor = load16(gamma + c) * s
        factorSlope[block] = factor
        factorSlope[blocks + block] = -factor * s * (load16(sums + channels + c) * inverseCount)
        meanShift[block] = load16(mean + c)
        meanShift[blocks + block] = -factor * meanGradient
      }
      return body(BatchNormGradientTerms(factorSlope: factorSlope, meanShift: meanShift, blocks: blocks))
    }
  }
}

/// The input gradient of a batch norm in training, from the batch's sums (`sums[c]` =
/// Σ dy, `sums[channels + c]` = Σ dy · x̂ over all `batchCount` values of the channel):
/// `dx = γ · inverseDeviation · (dy − Σdy / n − x̂ · Σdy·x̂ / n)`, sixteen channels at a
/// time pixel by pixel. Overwrites `inputGradient`. Cost: 6 FLOP per value.
@_spi(Kernels) public func batchNormInputGradient(
  outputGradient dy: UnsafePointer<Float>, input x: UnsafePointer<Float>, pixels: Int, channels: Int,
  mean: UnsafePointer<Float>, inverseDeviation: UnsafePointer<Float>, gamma: UnsafePointer<Float>,
  sums: UnsafePointer<Float>, batchCount: Int, inputGradient dx: UnsafeMutablePointer<Float>
) {
  let blocks = channels / 16
  withBatchNormGradientTerms(
    channels: channels, mean: mean, inverseDeviation: inverseDeviation, gamma: gamma, sums: sums,
    batchCount: batchCount
  ) { terms in
    BatchNormInputGradient(outputGradient: dy, input: x, terms: terms).write(
      pixels: pixels, channels: channels, from: 0, to: dx)
  }
  let inverseCount = 1 / Float(batchCount)
  var c = blocks * 16
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
