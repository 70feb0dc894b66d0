// What a Winograd output transform does with each row of tiles right after writing it,
// while the rows are in cache: nothing, add the input sums of the BatchNorm above
// (`BatchNormInputSums`), or, for an input gradient, take it through the ReLU of the
// BatchNorm below and add that BatchNorm's gradient sums (`BatchNormGradientRows`). Each
// gives the bits of its own pass over the stored map: rows are finished top to bottom,
// so every channel still adds its pixels in order.

/// Work on a Winograd output's rows as they are written.
package protocol WinogradOutputRows {
  /// Runs `transform` on image `image` of the call, whose output starts at `output`
  /// (`width` pixels of `channels` per row); `transform` hands each range of rows it has
  /// finished to its argument, top to bottom.
  func forImage(
    _ image: Int, output: UnsafeMutablePointer<Float>, height: Int, width: Int, channels: Int,
    _ transform: ((Range<Int>) -> Void) -> Void)
}

/// No work on the rows.
package struct WinogradOutputRowsNone: WinogradOutputRows {
  package init() {}

  @inline(__always) package func forImage(
    _ image: Int, output: UnsafeMutablePointer<Float>, height: Int, width: Int, channels: Int,
    _ transform: ((Range<Int>) -> Void) -> Void
  ) { transform { _ in } }
}

/// The input gradient of a convolution above a BatchNorm that it applies (with the ReLU
/// fused into that BatchNorm, if any), in training: as each row of the gradient at the
/// BatchNorm's output is written, zeroes it where the ReLU's input is not positive (the
/// bits of `reluBackwardThroughBatchNorm`) and adds the image's `Σ dy` and `Σ dy · x̂` to
/// `sums` (those of `batchNormAddGradientSums`). Channels must be a multiple of 16.
public struct BatchNormGradientRows: WinogradOutputRows {
  /// The BatchNorm's input for the call's first image; the next images follow it.
  public let input: UnsafePointer<Float>
  /// The folded scale and offset whose sign the ReLU takes, or nil without a ReLU.
  public let relu: (scale: UnsafePointer<Float>, offset: UnsafePointer<Float>)?
  public let mean: UnsafePointer<Float>, inverseDeviation: UnsafePointer<Float>
  /// `Σ dy` then `Σ dy · x̂`, channels each.
  public let sums: UnsafeMutablePointer<Float>

  public init(
    input: UnsafePointer<Float>, relu: (scale: UnsafePointer<Float>, offset: UnsafePointer<Float>)?,
    mean: UnsafePointer<Float>, inverseDeviation: UnsafePointer<Float>, sums: UnsafeMutablePointer<Float>
  ) {
    self.input = input
    self.relu = relu
    self.mean = mean
    self.inverseDeviation = inverseDeviation
    self.sums = sums
  }

  @inline(__always) package func forImage(
    _ image: Int, output: UnsafeMutablePointer<Float>, height: Int, width: Int, channels: Int,
    _ transform: ((Range<Int>) -> Void) -> Void
  ) {
    precondition(channels % 16 == 0, "BatchNormGradientRows: channels must be a multiple of 16")
    let blocks = channels / 16
    let x = input + image * height * width * channels
    withUnsafeTemporaryAllocation(of: SIMD16<Float>.self, capacity: 2 * blocks) { buffer in
      let totals = buffer.baseAddress!
      totals.initialize(repeating: SIMD16<Float>(), count: 2 * blocks)
      transform { rows in
        forEachBlockGroup(channels: channels) { chosen in
          add((rows.lowerBound * width)..<(rows.upperBound * width), of: x, output, channels: channels, totals, chosen)
        }
      }
      for block in 0..<blocks {
        let c = block * 16
        store16(load16(sums + c) + totals[block], sums + c)
        store16(load16(sums + channels + c) + totals[blocks + block], sums + channels + c)
      }
    }
  }

  /// `forImage`'s work on pixels `pixels` of one image (BatchNorm input `x`, gradient `g`)
  /// for the 16-channel blocks `chosen`, 1, 2 or 4 of them (a constant once inlined), whose
  /// running sums stay in registers meanwhile. Cost: 6 FLOP per value.
  @inline(__always) private func add(
    _ pixels: Range<Int>, of x: UnsafePointer<Float>, _ g: UnsafeMutablePointer<Float>, channels: Int,
    _ totals: UnsafeMutablePointer<SIMD16<Float>>, _ chosen: Range<Int>
  ) {
    let all = channels / 16
    let count = chosen.count
    @inline(__always) func total(_ k: Int) -> (SIMD16<Float>, SIMD16<Float>) {
      k < count
        ? (totals[chosen.lowerBound + k], totals[all + chosen.lowerBound + k]) : (SIMD16<Float>(), SIMD16<Float>())
    }
    var (s0, q0) = total(0)
    var (s1, q1) = total(1)
    var (s2, q2) = total(2)
    var (s3, q3) = total(3)
    @inline(__always) func step(_ p: Int, _ k: Int, _ s: inout SIMD16<Float>, _ q: inout SIMD16<Float>) {
      let c = 16 * (chosen.lowerBound + k)
      let i = p * channels + c
      let value = load16(x + i)
      var gradient = load16(g + i)
      if let relu {
        let y = load16(relu.offset + c).addingProduct(value, load16(relu.scale + c))
        gradient.replace(with: 0, where: y .<= 0)
        store16(gradient, g + i)
      }
      s += gradient
      q = q.addingProduct(gradient, (value - load16(mean + c)) * load16(inverseDeviation + c))
    }
    for p in pixels {
      step(p, 0, &s0, &q0)
      if count > 1 { step(p, 1, &s1, &q1) }
      if count > 2 {
        step(p, 2, &s2, &q2)
        step(p, 3, &s3, &q3)
      }
    }
    @inline(__always) func keep(_ k: Int, _ s: SIMD16<Float>, _ q: SIMD16<Float>) {
      guard k < count else { return }
      totals[chosen.lowerBound + k] = s
      totals[all + chosen.lowerBound + k] = q
    }
    keep(0, s0, q0)
    keep(1, s1, q1)
    keep(2, s2, q2)
    keep(3, s3, q3)
  }
}
