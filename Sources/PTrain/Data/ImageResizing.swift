/// Resizes 8-bit images with Pillow's `resize(size, Image.BILINEAR)` filter, which
/// torchvision's `Resize(size, antialias=True)` also uses: a triangle (tent) filter one
/// source pixel wide, widened by the scale factor when shrinking so that every source
/// pixel counts (no aliasing), applied across rows, then down columns, with pixel centres
/// at half-integers. Computed in `Float` and rounded once at the end, so a byte can differ
/// by one from Pillow's fixed-point result.
package enum ImageResizing {
  /// The filter taps of one output coordinate: the first source coordinate they read,
  /// and one normalised weight per source coordinate from there.
  struct Taps {
    let first: [Int]
    let counts: [Int]
    /// `width` weights per output coordinate, the first `counts[i]` of them used.
    let weights: [Float]
    let width: Int
  }

  /// The taps that map `inputSize` coordinates onto `outputSize`, as Pillow's
  /// `precompute_coeffs` computes them for the bilinear filter. Cost: O(output · taps).
  static func taps(from inputSize: Int, to outputSize: Int) -> Taps {
    let scale = Double(inputSize) / Double(outputSize)
    let filterScale = max(scale, 1)
    let support = filterScale  // the triangle's support (1) widened by the filter scale
    let width = Int(support.rounded(.up)) * 2 + 1
    var first = [Int](repeating: 0, count: outputSize)
    var counts = [Int](repeating: 0, count: outputSize)
    var weights = [Float](repeating: 0, count: outputSize * width)
    for output in 0..<outputSize {
      let center = (Double(output) + 0.5) * scale
      let low = max(Int(center - support + 0.5), 0)
      let high = min(Int(center + support + 0.5), inputSize)
      var taps = [Double]()
      for source in low..<high {
        taps.append(max(0, 1 - abs((Double(source) - center + 0.5) / filterScale)))
      }
      let total = taps.reduce(0, +)
      first[output] = low
      counts[output] = taps.count
      for (k, tap) in taps.enumerated() { weights[output * width + k] = Float(total > 0 ? tap / total : 0) }
    }
    return Taps(first: first, counts: counts, weights: weights, width: width)
  }

  /// Resizes the `source` image of `from` (interleaved channels) into `target`, an image
  /// of `to`; the two shapes have the same channels. An image already of the target
  /// size is copied as it is. Cost: O(to.width · from.height · taps + to.count · taps).
  package static func resize(
    _ source: UnsafePointer<UInt8>, from: ImageShape, into target: UnsafeMutablePointer<UInt8>, to: ImageShape
  ) {
    precondition(from.channels == to.channels, "resize keeps the channels")
    let c = to.channels
    guard from.height != to.height || from.width != to.width else {
      target.update(from: source, count: to.count)
      return
    }
    let across = taps(from: from.width, to: to.width)
    let down = taps(from: from.height, to: to.height)
    // Across each source row first (Pillow's order), into floats.
    var rows = [Float](repeating: 0, count: from.height * to.width * c)
    for y in 0..<from.height {
      let row = source + y * from.width * c
      for x in 0..<to.width {
        let weights = x * across.width
        for channel in 0..<c {
          var sum: Float = 0
          for k in 0..<across.counts[x] {
            sum += across.weights[weights + k] * Float(row[(across.first[x] + k) * c + channel])
          }
          rows[(y * to.width + x) * c + channel] = sum
        }
      }
    }
    for y in 0..<to.height {
      let weights = y * down.width
      for x in 0..<(to.width * c) {
        var sum: Float = 0
        for k in 0..<down.counts[y] {
          sum += down.weights[weights + k] * rows[(down.first[y] + k) * to.width * c + x]
        }
        target[y * to.width * c + x] = UInt8(min(max(sum.rounded(), 0), 255))
      }
    }
  }
}
