/// How image bytes become the model's input: per channel, `x = (byte / 255 − mean) / std`.
///
/// The mean and standard deviation are the training set's, rounded to 4 decimals (so
/// MNIST's are the conventional 0.1307 and 0.3081), or given. A checkpoint stores them,
/// so that evaluation and fine-tuning standardise exactly as training did.
public struct Normalization: Sendable, Equatable, CustomStringConvertible {
  /// Per channel, in units of byte / 255.
  public let mean: [Float], standardDeviation: [Float]

  /// MNIST's training-set statistics, the normalisation of PyTorch's MNIST example.
  public static let mnist = Normalization(mean: [0.1307], standardDeviation: [0.3081])

  /// No standardisation: `x = byte / 255` in each of `channels` channels (mean 0,
  /// deviation 1).
  public static func byteScale(channels: Int) -> Normalization {
    Normalization(
      mean: [Float](repeating: 0, count: channels), standardDeviation: [Float](repeating: 1, count: channels))
  }

  public init(mean: [Float], standardDeviation: [Float]) {
    self.mean = mean
    self.standardDeviation = standardDeviation
  }

  /// The statistics of `images`, per channel over every pixel of every image, rounded to
  /// 4 decimals. A channel that never varies gets a deviation of 1. Throws when images
  /// kept in their files cannot be read. Cost: O(pixels).
  public init(of images: LabeledImages) throws {
    let channels = images.shape.channels
    var sums = [Double](repeating: 0, count: channels)
    var squares = [Double](repeating: 0, count: channels)
    // Per-channel histograms: exact, and O(pixels) with no floating-point rounding.
    var histogram = [Int](repeating: 0, count: 256 * channels)
    // A thousand images at a time, read from their files or copied from memory.
    let chunk = 1000
    var bytes = [UInt8](repeating: 0, count: min(chunk, images.count) * images.shape.count)
    for start in stride(from: 0, to: images.count, by: chunk) {
      let end = min(start + chunk, images.count)
      try bytes.withUnsafeMutableBufferPointer { buffer in
        try images.copyImages(start..<end, into: buffer.baseAddress!)
        for (index, byte) in buffer[..<((end - start) * images.shape.count)].enumerated() {
          histogram[(index % channels) * 256 + Int(byte)] += 1
        }
      }
    }
    for c in 0..<channels {
      for value in 0..<256 {
        let count = Double(histogram[c * 256 + value])
        sums[c] += count * Double(value)
        squares[c] += count * Double(value) * Double(value)
      }
    }
    let n = Double(max(images.count * images.shape.height * images.shape.width, 1))
    func rounded(_ x: Double) -> Float { Float((x * 10_000).rounded() / 10_000) }
    mean = (0..<channels).map { rounded(sums[$0] / n / 255) }
    standardDeviation = (0..<channels).map { c in
      let variance = max(squares[c] / n - (sums[c] / n) * (sums[c] / n), 0)
      let deviation = rounded(variance.squareRoot() / 255)
      return deviation > 0 ? deviation : 1
    }
  }

  /// Reads `mean,std` for one channel or `mean1,mean2,…,std1,std2,…` for several, as
  /// `--normalize` and checkpoints write it. Throws a one-line error for a wrong count,
  /// a value that is not a finite number, or a deviation that is not positive.
  public init(parsing text: String, channels: Int) throws {
    let values = text.split(separator: ",", omittingEmptySubsequences: false).map { Float($0) }
    guard values.count == 2 * channels, values.allSatisfy({ $0?.isFinite ?? false }) else {
      throw PTrainError(
        "normalisation \"\(text)\": expected \(2 * channels) numbers (\(channels) mean(s), then \(channels) standard deviation(s))"
      )
    }
    let numbers = values.map { $0! }
    guard numbers[channels...].allSatisfy({ $0 > 0 }) else {
      throw PTrainError("normalisation \"\(text)\": a standard deviation must be positive")
    }
    self.init(mean: Array(numbers[..<channels]), standardDeviation: Array(numbers[channels...]))
  }

  /// `mean…,std…` with each value in its shortest exact form.
  public var description: String { (mean + standardDeviation).map { "\($0)" }.joined(separator: ",") }

  /// The per-channel factors of `normalizePixels`: `scale = 1 / (255 · std)` and
  /// `shift = −mean / std`.
  package var scale: [Float] { standardDeviation.map { 1 / (255 * $0) } }
  package var shift: [Float] { zip(mean, standardDeviation).map { -$0 / $1 } }
}
