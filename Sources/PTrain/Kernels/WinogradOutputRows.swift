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
@_spi(Kernels) public struct BatchNormGradientRows: WinogradOutputRows {
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
        addInRegisters((rows.lowerBound * width)..<(rows.upperBound * width), channels: channels, totals: totals) {
          p, c, sum, product in
          let i = p * channels + c
          let value = load16(x + i)
          var gradient = load16(output + i)
          if let relu {
            let y = load16(relu.offset + c).addingProduct(value, load16(relu.scale + c))
            gradient.replace(with: 0, where: y .<= 0)
            store16(gradient, output + i)
          }
          sum += gradient
          product = product.addingProduct(gradient, (value - load16(mean + c)) * load16(inverseDeviation + c))
        }
      }
      for block in 0..<blocks {
        let c = block * 16
        store16(load16(sums + c) + totals[block], sums + c)
        store16(load16(sums + channels + c) + totals[blocks + block], sums + channels + c)
      }
    }
  }
}
