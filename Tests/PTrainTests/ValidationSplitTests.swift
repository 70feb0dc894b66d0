import Foundation
import XCTest

@testable import PTrain

/// The validation split: held-out images never overlap the training ones, the seed alone
/// chooses them, and images kept in their files split as those in memory do.
final class ValidationSplitTests: XCTestCase {
  func testSplitIsDisjointCompleteAndChosenByTheSeed() throws {
    let count = 50
    let pixels = (0..<count).flatMap { index in [UInt8](repeating: UInt8(index), count: 4) }
    let labels = (0..<count).map { UInt8($0 % 10) }
    let images = try LabeledImages(pixels: pixels, labels: labels, shape: ImageShape(height: 2, width: 2, channels: 1))
    let (train, validation) = images.splitting(validationCount: 12, seed: 7)
    XCTAssertEqual(validation.count, 12)
    XCTAssertEqual(train.count, 38)
    // Each image's bytes are its index: the two parts' indices are disjoint and cover all.
    let trainIndices = try stride(from: 0, to: train.count * 4, by: 4).map { Int(try train.pixels[$0]) }
    let heldIndices = try stride(from: 0, to: validation.count * 4, by: 4).map { Int(try validation.pixels[$0]) }
    XCTAssertTrue(Set(trainIndices).isDisjoint(with: heldIndices))
    XCTAssertEqual(Set(trainIndices).union(heldIndices), Set(0..<count))
    XCTAssertEqual(trainIndices, trainIndices.sorted(), "file order kept")
    XCTAssertEqual(train.labels, trainIndices.map { labels[$0] })
    XCTAssertEqual(validation.labels, heldIndices.map { labels[$0] })
    let again = images.splitting(validationCount: 12, seed: 7)
    XCTAssertEqual(try again.validation.pixels, try validation.pixels, "the seed alone decides")
    XCTAssertNotEqual(try images.splitting(validationCount: 12, seed: 8).validation.pixels, try validation.pixels)
  }

  func testImagesInFilesSplitAsInMemory() throws {
    let directory = try makeTemporaryDirectory()
    var generator = SeededGenerator(seed: 3)
    for file in CIFAR10.trainingFiles + [CIFAR10.testFile] {
      var bytes: [UInt8] = []
      for record in 0..<6 {
        bytes.append(UInt8(record % 10))
        bytes += (0..<3072).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
      }
      try Data(bytes).write(to: directory.appendingPathComponent(file))
    }
    let inFiles = try Dataset.load(directory: directory.path, name: "cifar").train
    XCTAssertNil(inFiles.bytesInMemory)
    let inMemory = try LabeledImages(pixels: try inFiles.pixels, labels: inFiles.labels, shape: inFiles.shape)
    let a = inFiles.splitting(validationCount: 7, seed: 1)
    let b = inMemory.splitting(validationCount: 7, seed: 1)
    XCTAssertEqual(try a.train.pixels, try b.train.pixels)
    XCTAssertEqual(try a.validation.pixels, try b.validation.pixels)
    XCTAssertEqual(try a.train.prefix(5).pixels, try b.train.prefix(5).pixels)
    XCTAssertEqual(a.train.fingerprint, b.train.fingerprint)
  }

  /// `spread` samples every part of a set ordered by class, with each image's pixels.
  func testSpreadSamplesEveryClassOfAnOrderedSet() throws {
    let shape = ImageShape(height: 1, width: 1, channels: 1)
    let images = try LabeledImages(
      pixels: (0..<12).map { UInt8($0) }, labels: [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2], classes: 3, shape: shape)
    let spread = images.spread(6)
    XCTAssertEqual(spread.labels, [0, 0, 1, 1, 2, 2])
    XCTAssertEqual(try spread.pixels, [0, 2, 4, 6, 8, 10])
    XCTAssertEqual(images.spread(12).labels, images.labels)
  }

  func testSplitTextAndCounts() throws {
    XCTAssertEqual(try ValidationSplit(parsing: "5000"), .images(5000))
    XCTAssertEqual(try ValidationSplit(parsing: "0.1"), .fraction(0.1))
    XCTAssertEqual(try ValidationSplit(parsing: "0.1").count(of: 60000), 6000)
    XCTAssertEqual(try ValidationSplit(parsing: "0.001").count(of: 10), 1, "at least one image")
    for bad in ["0", "-5", "1.0", "1.5", "0.0", "ten", ""] {
      XCTAssertThrowsError(try ValidationSplit(parsing: bad), bad)
    }
    XCTAssertThrowsError(try ValidationSplit.images(100).count(of: 100)) {
      XCTAssertTrue("\($0)".contains("leaves none of the 100 training images"), "\($0)")
    }
  }
}
