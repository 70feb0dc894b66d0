#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Random crops, horizontal flips and erased rectangles of the training images, as
/// torchvision's `RandomCrop(size, padding=P)`, `RandomHorizontalFlip()` and, after
/// `Normalize`, `RandomErasing(p, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0)` make
/// them. Each draw is a pure function of (seed, epoch, image index), so threads never
/// change a bit and a resumed run replays it.
public struct Augmentation: Sendable, Equatable, CustomStringConvertible {
  /// Zero pixels added on every side before a crop of the original size (0: no crops).
  public let padding: Int
  public let flip: Bool
  /// The probability that an image gets a rectangle set to 0 after standardisation (its
  /// channel means); 0: never.
  public let erasing: Double

  public static let none = Augmentation(padding: 0, flip: false)

  /// The largest crop padding `crop:P` accepts.
  public static let maximumPadding = 16
  /// The probability that a bare `erase` means, torchvision's default.
  public static let defaultErasing = 0.5
  /// The share of the image an erased rectangle covers, drawn uniformly (torchvision's
  /// defaults).
  static let erasedArea = 0.02...0.33
  /// The rectangle's height / width, drawn uniformly in its logarithm.
  static let erasedAspectRatio = 0.3...3.3
  /// How many rectangles are drawn before one fits inside the image; none fits: no erasing.
  static let erasingAttempts = 10

  public init(padding: Int, flip: Bool, erasing: Double = 0) {
    self.padding = padding
    self.flip = flip
    self.erasing = erasing
  }

  /// Reads `crop:P`, `flip`, `erase` or `erase:PROBABILITY`, comma-separated
  /// (`crop:4,flip,erase`), or `none`.
  public init(parsing text: String) throws {
    var padding = 0
    var flip = false
    var erasing = 0.0
    for item in text.split(separator: ",", omittingEmptySubsequences: false) {
      if item == "flip" {
        flip = true
      } else if item.hasPrefix("crop:"), let value = Int(item.dropFirst(5)),
        (1...Self.maximumPadding).contains(value)
      {
        padding = value
      } else if item == "erase" {
        erasing = Self.defaultErasing
      } else if item.hasPrefix("erase:"), let value = Double(item.dropFirst(6)), value > 0, value <= 1 {
        erasing = value
      } else if item == "none" && text == "none" {
        continue
      } else {
        throw PTrainError(
          "augmentation \"\(text)\": expected crop:P (P from 1 to \(Self.maximumPadding)), flip, erase or erase:P "
            + "(a probability above 0, at most 1), separated by commas; found \"\(item)\"")
      }
    }
    self.init(padding: padding, flip: flip, erasing: erasing)
  }

  public var isNone: Bool { padding == 0 && !flip && erasing == 0 }

  public var description: String {
    guard !isNone else { return "none" }
    return [padding > 0 ? "crop:\(padding)" : nil, flip ? "flip" : nil, erasing > 0 ? "erase:\(erasing)" : nil]
      .compactMap { $0 }.joined(separator: ",")
  }

  /// The rectangle of an image that random erasing sets to 0, in the crop's coordinates.
  package struct Erasure: Equatable, Sendable {
    package var top: Int, left: Int, height: Int, width: Int

    package init(top: Int, left: Int, height: Int, width: Int) {
      (self.top, self.left, self.height, self.width) = (top, left, height, width)
    }
  }

  /// What one image gets: crop offsets (each from 0 to 2·padding), a flip, an erasure.
  package struct Draw: Equatable, Sendable {
    package var dy = 0, dx = 0
    package var flip = false
    package var erasure: Erasure?

    package init(dy: Int = 0, dx: Int = 0, flip: Bool = false, erasure: Erasure? = nil) {
      (self.dy, self.dx, self.flip, self.erasure) = (dy, dx, flip, erasure)
    }
  }

  /// The draw of image `index` (of `height` × `width` pixels) in epoch `epoch` of a run
  /// seeded `seed`. The crop and flip come from one 64-bit hash, the erasure from a
  /// stream of its own, so adding `erase` leaves a run's crops and flips as they were.
  /// Cost: a few integer operations, and at most 41 hashes with erasing.
  package func draw(seed: UInt64, epoch: Int, index: Int, height: Int, width: Int) -> Draw {
    func key(_ salt: UInt64) -> UInt64 {
      splitMix64(
        splitMix64(splitMix64(seed ^ salt) ^ UInt64(truncatingIfNeeded: epoch)) ^ UInt64(truncatingIfNeeded: index))
    }
    let bits = key(0x6175_676D_656E_7421)
    let span = UInt64(2 * padding + 1)
    var draw = Draw(dy: Int(bits % span), dx: Int((bits >> 20) % span), flip: flip && (bits >> 63) == 1)
    if erasing > 0 {
      draw.erasure = erasure(key: key(0x6572_6173_696E_6721), height: height, width: width)
    }
    return draw
  }

  /// torchvision's `RandomErasing.get_params` on uniform numbers drawn from `key`: with
  /// probability `erasing`, up to `erasingAttempts` rectangles of a random area and aspect
  /// ratio, the first that fits placed uniformly.
  private func erasure(key: UInt64, height: Int, width: Int) -> Erasure? {
    var counter: UInt64 = 0
    func uniform() -> Double {
      counter += 1
      return Double(splitMix64(key &+ counter) >> 11) * 0x1p-53
    }
    func uniform(_ range: ClosedRange<Double>) -> Double {
      range.lowerBound + (range.upperBound - range.lowerBound) * uniform()
    }
    guard uniform() < erasing else { return nil }
    let area = Double(height * width)
    let logRatios = log(Self.erasedAspectRatio.lowerBound)...log(Self.erasedAspectRatio.upperBound)
    for _ in 0..<Self.erasingAttempts {
      let erasedArea = area * uniform(Self.erasedArea)
      let aspectRatio = exp(uniform(logRatios))
      let h = Int((erasedArea * aspectRatio).squareRoot().rounded(.toNearestOrEven))
      let w = Int((erasedArea / aspectRatio).squareRoot().rounded(.toNearestOrEven))
      guard h < height && w < width else { continue }
      let top = min(Int(uniform() * Double(height - h + 1)), height - h)
      let left = min(Int(uniform() * Double(width - w + 1)), width - w)
      return Erasure(top: top, left: left, height: h, width: w)
    }
    return nil
  }
}
