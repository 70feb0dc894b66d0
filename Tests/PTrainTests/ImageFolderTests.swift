import Foundation
import XCTest

@testable import PTrain

/// Image folders as torchvision's ImageFolder reads them: classes from the folder names,
/// files in its order, the same bytes at any thread count, and one line for each bad input.
final class ImageFolderTests: XCTestCase {
  /// An image of `height` × `width` × `channels` whose bytes depend on `seed`.
  static func pixels(_ height: Int, _ width: Int, _ channels: Int, seed: Int) -> [UInt8] {
    (0..<(height * width * channels)).map { UInt8(($0 * 29 + seed * 71) % 256) }
  }

  /// train/cat: 1.png (6×8 RGB), 2.jpg (6×8 RGB); train/dog: 4.png (10×10 gray), a/3.png
  /// (6×8 RGB), notes.txt; test/cat/5.png, test/dog/6.png (6×8 RGB).
  func makeFolder() throws -> URL {
    let root = try makeTemporaryDirectory()
    func png(_ path: String, _ h: Int, _ w: Int, _ c: Int, seed: Int) throws {
      try ImageFixtures.write(
        ImageFixtures.png(width: w, height: h, channels: c, pixels: Self.pixels(h, w, c, seed: seed)),
        to: root.appendingPathComponent(path))
    }
    try png("train/cat/1.png", 6, 8, 3, seed: 1)
    try ImageFixtures.write(
      ImageFixtures.jpeg(width: 8, height: 6, channels: 3, pixels: Self.pixels(6, 8, 3, seed: 2)),
      to: root.appendingPathComponent("train/cat/2.jpg"))
    try png("train/dog/a/3.png", 6, 8, 3, seed: 3)
    try png("train/dog/4.png", 10, 10, 1, seed: 4)
    try ImageFixtures.write(Array("not an image".utf8), to: root.appendingPathComponent("train/dog/notes.txt"))
    try png("test/cat/5.png", 6, 8, 3, seed: 5)
    try png("test/dog/6.png", 6, 8, 3, seed: 6)
    return root
  }

  func testClassFoldersBecomeLabelsInTorchvisionsOrder() throws {
    let root = try makeFolder()
    let dataset = try Dataset.load(directory: root.path, name: "pets")
    XCTAssertEqual(dataset.classNames, ["cat", "dog"])
    XCTAssertEqual(dataset.train.labels, [0, 0, 1, 1])
    XCTAssertEqual(dataset.test.labels, [0, 1])
    let report = try XCTUnwrap(dataset.imageFolder)
    XCTAssertEqual(report.size, ImageSize(height: 6, width: 8), "the most common size")
    XCTAssertTrue(report.sizeIsMostCommon)
    XCTAssertEqual(report.channels, 3, "not every image is gray")
    XCTAssertEqual(report.ignored, [root.path + "/train/dog/notes.txt"])
    XCTAssertTrue(report.hasTestSet)
    let shape = ImageShape(height: 6, width: 8, channels: 3)
    XCTAssertEqual(dataset.train.shape, shape)
    let pixels = try dataset.train.pixels
    XCTAssertEqual(Array(pixels[0..<shape.count]), Self.pixels(6, 8, 3, seed: 1), "1.png as it is")
    // torchvision lists a folder's own files before its subfolders': dog/4.png, then dog/a/3.png.
    let gray: [UInt8] = Self.pixels(10, 10, 1, seed: 4).flatMap { value -> [UInt8] in [value, value, value] }
    var resized = [UInt8](repeating: 0, count: shape.count)
    gray.withUnsafeBufferPointer { source in
      resized.withUnsafeMutableBufferPointer {
        ImageResizing.resize(
          source.baseAddress!, from: ImageShape(height: 10, width: 10, channels: 3), into: $0.baseAddress!, to: shape)
      }
    }
    XCTAssertEqual(Array(pixels[(2 * shape.count)..<(3 * shape.count)]), resized, "4.png: gray to RGB, resized")
    XCTAssertEqual(Array(pixels[(3 * shape.count)...]), Self.pixels(6, 8, 3, seed: 3))
  }

  func testTheBytesDoNotDependOnTheThreadCountAndTheSizeCanBeChosen() throws {
    let root = try makeFolder()
    let one = try Dataset.load(directory: root.path, name: "pets", imageFolder: ImageFolderOptions(threads: 1))
    let three = try Dataset.load(directory: root.path, name: "pets", imageFolder: ImageFolderOptions(threads: 3))
    XCTAssertEqual(try one.train.pixels, try three.train.pixels)
    XCTAssertEqual(try one.test.pixels, try three.test.pixels)
    let small = try Dataset.load(
      directory: root.path, name: "pets",
      imageFolder: ImageFolderOptions(size: ImageSize(height: 4, width: 5), channels: 1, threads: 2))
    XCTAssertEqual(small.train.shape, ImageShape(height: 4, width: 5, channels: 1))
    XCTAssertEqual(small.imageFolder?.sizeIsMostCommon, false)
  }

  func testAFolderWithoutTestHasNoTestSet() throws {
    let root = try makeFolder()
    try FileManager.default.removeItem(at: root.appendingPathComponent("test"))
    let dataset = try Dataset.load(directory: root.path, name: "pets")
    XCTAssertEqual(dataset.test.count, 0)
    XCTAssertEqual(dataset.imageFolder?.hasTestSet, false)
    XCTAssertEqual(dataset.train.count, 4)
  }

  func testBadImagesAreNamedOrSkipped() throws {
    let root = try makeFolder()
    let bad = root.appendingPathComponent("train/cat/0.png")
    try ImageFixtures.write(Array("garbage".utf8), to: bad)
    let full = ImageFixtures.png(width: 8, height: 6, channels: 3, pixels: Self.pixels(6, 8, 3, seed: 9))
    try ImageFixtures.write(Array(full.prefix(full.count / 2)), to: root.appendingPathComponent("test/dog/7.png"))
    XCTAssertThrowsError(
      try Dataset.load(directory: root.path, name: "pets", imageFolder: ImageFolderOptions(threads: 2))
    ) {
      XCTAssertEqual(
        "\($0)",
        "\(bad.path): is not a PNG or JPEG image (its first bytes are neither's signature) (--skip-bad-images leaves such files out)"
      )
    }
    let skipping = try Dataset.load(
      directory: root.path, name: "pets", imageFolder: ImageFolderOptions(skipBadImages: true, threads: 2))
    XCTAssertEqual(skipping.train.count, 4)
    XCTAssertEqual(skipping.test.count, 2, "the truncated test image is left out too")
    XCTAssertEqual(skipping.imageFolder?.skipped.count, 2)
    XCTAssertTrue(
      skipping.imageFolder!.skipped.contains { $0.hasPrefix(root.path + "/test/dog/7.png: is not a valid PNG") })
  }

  func testFolderProblemsAreOneLineNamingThePath() throws {
    func refusal(_ change: (URL) throws -> Void) throws -> String {
      let root = try makeFolder()
      try change(root)
      do {
        _ = try Dataset.load(directory: root.path, name: "pets")
        return "loaded"
      } catch { return "\(error)".replacingOccurrences(of: root.path, with: "ROOT") }
    }
    let manager = FileManager.default
    XCTAssertEqual(
      try refusal {
        try manager.createDirectory(at: $0.appendingPathComponent("train/bird"), withIntermediateDirectories: true)
      },
      "ROOT/train/bird: an empty class folder (no .png, .jpg or .jpeg file in it)")
    XCTAssertEqual(
      try refusal {
        try manager.createSymbolicLink(
          atPath: $0.appendingPathComponent("train/cat/up").path, withDestinationPath: "..")
      }, "ROOT/train/cat/up/cat: is a symbolic link loop (it leads back to a folder above it)")
    XCTAssertEqual(
      try refusal {
        try manager.createSymbolicLink(
          atPath: $0.appendingPathComponent("train/cat/self").path, withDestinationPath: "self")
      }, "ROOT/train/cat/self: is a symbolic link loop")
    XCTAssertTrue(
      try refusal {
        try manager.createSymbolicLink(
          atPath: $0.appendingPathComponent("train/cat/gone.png").path, withDestinationPath: "nowhere.png")
      }.hasPrefix("ROOT/train/cat/gone.png: is a dangling symbolic link"))
    XCTAssertEqual(
      try refusal {
        try ImageFixtures.write(
          ImageFixtures.png(width: 8, height: 6, channels: 3, pixels: Self.pixels(6, 8, 3, seed: 1)),
          to: $0.appendingPathComponent("test/fish/1.png"))
      }, "ROOT/test/fish: a class the training folder does not have (its classes: cat, dog)")
    XCTAssertEqual(
      try refusal {
        try manager.removeItem(at: $0.appendingPathComponent("train"))
        try ImageFixtures.write([1], to: $0.appendingPathComponent("train/loose.png"))
      }, "ROOT/train: holds no class folders (expected ROOT/train/CLASS/IMAGE.png, one folder per class)")
  }
}
