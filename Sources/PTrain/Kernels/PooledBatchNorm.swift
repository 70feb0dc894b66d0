// The backward pass of a BatchNorm (and its ReLU) that the 2×2 max-pool above it applies
// (see `FoldedBatchNorm`). The gradient at the BatchNorm's output is nonzero only where the
// pool routes its output gradient, so instead of storing it (`maxPool2x2Backward`) and
// reading it back twice (`batchNormAddGradientSums`, then `batchNormInputGradient` once the
// batch's sums are known), both steps route the pool's gradient again, window by window,
// from the pool's output, its gradient and the BatchNorm's input. The bits are those of the
// three passes: the same values are added in the same order, except the zeros of a dropped
// odd row or column, which cannot change a sum that starts at +0 (it never becomes −0).

/// One image's 2×2 max-pool (16-channel blocks) above the BatchNorm it applies
/// (`normalizing`), in training: the BatchNorm's input `input` (`height` × `width` ×
/// `channels`), the pool's `output` and the gradient at it, `outputGradient`.
@_spi(Kernels) public struct PooledBatchNormGradient {
  public let input: UnsafePointer<Float>, output: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>
  public let height: Int, width: Int, channels: Int
  /// Whether the gradient goes through a ReLU below the pool (see `maxPool2x2Backward`).
  public let throughReLU: Bool
  public let normalizing: FoldedBatchNorm

  public init(
    input: UnsafePointer<Float>, output: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, height: Int,
    width: Int, channels: Int, throughReLU: Bool, normalizing: FoldedBatchNorm
  ) {
    precondition(channels % 16 == 0, "PooledBatchNormGradient: channels must be a multiple of 16")
    self.input = input
    self.output = output
    self.outputGradient = outputGradient
    self.height = height
    self.width = width
    self.channels = channels
    self.throughReLU = throughReLU
    self.normalizing = normalizing
  }

  /// Window (`oy`, `ox`)'s inputs and the gradients `maxPool2x2Backward` routes to them, for
  /// the 16 channels from `c` (see `maxPool2x2Route`).
  @inline(__always) func route(_ oy: Int, _ ox: Int, channel c: Int) -> (inputs: PoolWindow, gradients: PoolWindow) {
    let pooled = (oy * (width / 2) + ox) * channels
    return maxPool2x2Route(
      window: UnsafeRawPointer(input + ((2 * oy) * width + 2 * ox) * channels), right: 4 * channels,
      down: 4 * width * channels, byteOffset: 4 * c, max: UnsafeRawPointer(output + pooled),
      gradient: UnsafeRawPointer(outputGradient + pooled), throughReLU: throughReLU
    ) { normalizing.apply($0, channel: $1) }
  }

  /// Adds the image's `Σ dy` and `Σ dy · x̂` per channel to `sums[c]` and
  /// `sums[channels + c]`, where `dy` is the gradient `maxPool2x2Backward` would route to
  /// the BatchNorm's output and `x̂ = (x − mean) · inverseDeviation`: the bits of
  /// `batchNormAddGradientSums` over that `dy`. Each window row runs twice, for its top
  /// pixels then its bottom ones, so every channel adds its pixels in row-major order, and
  /// each window takes every block of channels in turn, so the maps are read in memory
  /// order (a block at a time over the whole image, from L3, took 1.3× as long).
  /// Cost: O(height · width · channels), the routing twice.
  public func addSums(
    mean: UnsafePointer<Float>, inverseDeviation: UnsafePointer<Float>, into sums: UnsafeMutablePointer<Float>
  ) {
    let blocks = channels / 16
    withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: 2 * blocks) { totals in
      totals.initialize(repeating: SIMD16<Float>())
      for oy in 0..<(height / 2) {
        for half in 0..<2 {
          for ox in 0..<(width / 2) {
            for block in 0..<blocks {
              let c = block * 16
              let routed = route(oy, ox, channel: c)
              let (left, leftInput, next, nextInput) =
                half == 1
                ? (routed.gradients.2, routed.inputs.2, routed.gradients.3, routed.inputs.3)
                : (routed.gradients.0, routed.inputs.0, routed.gradients.1, routed.inputs.1)
              let (mu, s) = (load16(mean + c), load16(inverseDeviation + c))
              var (first, second) = (totals[block], totals[blocks + block])
              first += left
              second = second.addingProduct(left, (leftInput - mu) * s)
              first += next
              second = second.addingProduct(next, (nextInput - mu) * s)
              (totals[block], totals[blocks + block]) = (first, second)
            }
          }
        }
      }
      for block in 0..<blocks {
        let c = block * 16
        store16(load16(sums + c) + totals[block], sums + c)
        store16(load16(sums + channels + c) + totals[blocks + block], sums + channels + c)
      }
    }
  }

  /// The BatchNorm's input gradient from the batch's sums: `batchNormInputGradient` over
  /// the `dy` of `addSums`, written window by window without storing `dy`. Arguments as
  /// `batchNormInputGradient`'s. Overwrites `inputGradient`. Cost: O(height · width · channels).
  public func inputGradient(
    mean: UnsafePointer<Float>, inverseDeviation: UnsafePointer<Float>, gamma: UnsafePointer<Float>,
    sums: UnsafePointer<Float>, batchCount: Int, into dx: UnsafeMutablePointer<Float>
  ) {
    let blocks = channels / 16
    withBatchNormGradientTerms(
      channels: channels, mean: mean, inverseDeviation: inverseDeviation, gamma: gamma, sums: sums,
      batchCount: batchCount
    ) { terms in
      /// A pixel that no window covers (a dropped odd row or column): its `dy` is zero.
      func uncovered(_ pixel: Int) {
        for block in 0..<blocks {
          let i = pixel * channels + block * 16
          store16(terms.inputGradient(dy: SIMD16<Float>(), x: load16(input + i), block: block), dx + i)
        }
      }
      for oy in 0..<(height / 2) {
        for ox in 0..<(width / 2) {
          let target = dx + ((2 * oy) * width + 2 * ox) * channels
          for block in 0..<blocks {
            let c = block * 16
            let (v, g) = route(oy, ox, channel: c)
            store16(terms.inputGradient(dy: g.0, x: v.0, block: block), target + c)
            store16(terms.inputGradient(dy: g.1, x: v.1, block: block), target + channels + c)
            store16(terms.inputGradient(dy: g.2, x: v.2, block: block), target + width * channels + c)
            store16(terms.inputGradient(dy: g.3, x: v.3, block: block), target + (width + 1) * channels + c)
          }
        }
        if width % 2 == 1 {
          uncovered((2 * oy) * width + width - 1)
          uncovered((2 * oy + 1) * width + width - 1)
        }
      }
      if height % 2 == 1 {
        for column in 0..<width { uncovered((height - 1) * width + column) }
      }
    }
  }
}
