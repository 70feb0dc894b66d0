/// How many training images a run holds out for validation: a count, or a fraction of the
/// training images (`--validation-split 5000` or `0.1`).
public enum ValidationSplit: Sendable, Equatable, CustomStringConvertible {
  case images(Int)
  case fraction(Double)

  /// Reads `N` (images, a whole number) or `F` (a fraction, 0 < F < 1, written with a
  /// point); throws a one-line error otherwise.
  public init(parsing text: String) throws {
    if let count = Int(text), count >= 1 {
      self = .images(count)
    } else if text.contains("."), let fraction = Double(text), fraction > 0, fraction < 1 {
      self = .fraction(fraction)
    } else {
      throw PTrainError(
        "validation split '\(text)': give a number of images (5000) or a fraction of the training images (0.1)")
    }
  }

  public var description: String {
    switch self {
    case .images(let count): "\(count)"
    case .fraction(let fraction): "\(fraction)"
    }
  }

  /// The images held out of `total` training images: at least 1, and at least one left
  /// to train on; throws a one-line error when that cannot be.
  public func count(of total: Int) throws -> Int {
    let count: Int
    switch self {
    case .images(let images): count = images
    case .fraction(let fraction): count = max(1, Int((Double(total) * fraction).rounded()))
    }
    guard count < total else {
      throw PTrainError(
        "a validation split of \(count) images leaves none of the \(total) training images to train on")
    }
    return count
  }
}

extension LabeledImages {
  /// Splits off `validationCount` images for validation, chosen by `seed` alone (a
  /// generator of its own, so neither the thread count nor the training's draws change
  /// it): a seeded shuffle of the indices, whose first `validationCount` are held out.
  /// Both parts keep the images' file order. Images kept in their files stay there.
  /// Cost: O(count) plus copying the images kept in memory.
  public func splitting(validationCount: Int, seed: UInt64) -> (train: LabeledImages, validation: LabeledImages) {
    var generator = SeededGenerator(seed: seed ^ Self.validationSeedSalt)
    var order = Array(0..<count)
    generator.shuffle(&order)
    var held = [Bool](repeating: false, count: count)
    for index in order.prefix(validationCount) { held[index] = true }
    let validation = (0..<count).filter { held[$0] }
    let train = (0..<count).filter { !held[$0] }
    return (subset(train), subset(validation))
  }

  /// `count` images spread evenly over the whole set (image `i · self.count / count`
  /// for each `i`, in file order): a sample of every class of an image folder, whose
  /// files are ordered by class, where `prefix` would take the first classes only.
  /// Cost: as `subset`.
  package func spread(_ count: Int) -> LabeledImages {
    subset((0..<count).map { $0 * self.count / count })
  }

  /// Mixed into the seed so that the split's draws are not the initialisation's.
  static let validationSeedSalt: UInt64 = 0x5641_4c49_4441_5445  // "VALIDATE"

  /// The images at `indices`, in that order. Cost: O(indices · shape.count) in memory,
  /// O(indices) for images kept in files.
  func subset(_ indices: [Int]) -> LabeledImages {
    let labels = indices.map { self.labels[$0] }
    switch storage {
    case .memory(let pixels):
      let size = shape.count
      var bytes = [UInt8](repeating: 0, count: indices.count * size)
      pixels.withUnsafeBufferPointer { source in
        bytes.withUnsafeMutableBufferPointer { target in
          for (n, index) in indices.enumerated() {
            (target.baseAddress! + n * size).update(from: source.baseAddress! + index * size, count: size)
          }
        }
      }
      return LabeledImages(storage: .memory(bytes), labels: labels, classes: classes, shape: shape)
    case .files(let files, let records):
      return LabeledImages(
        storage: .files(files, records: indices.map { records?[$0] ?? $0 }), labels: labels, classes: classes,
        shape: shape)
    }
  }
}
