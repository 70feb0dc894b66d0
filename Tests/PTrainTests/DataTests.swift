import Foundation
import PTrain
import XCTest

final class DataTests: XCTestCase {
  func testSHA256KnownVectors() {
    XCTAssertEqual(SHA256.hex([UInt8]()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    XCTAssertEqual(SHA256.hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    let long = Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)
    XCTAssertEqual(SHA256.hex(long), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    var incremental = SHA256()  // the same bytes fed in uneven pieces
    for chunk in stride(from: 0, to: long.count, by: 7) {
      Array(long[chunk..<min(chunk + 7, long.count)]).withUnsafeBytes { incremental.update($0) }
    }
    XCTAssertEqual(incremental.finalize().map { String(format: "%02x", $0) }.joined(), SHA256.hex(long))
  }

  /// The bundled files are the real MNIST: each uncompressed file matches SHA256SUMS.
  func testBundledMNISTMatchesSHA256SUMS() throws {
    let sums = try String(
      contentsOf: packageRoot.appendingPathComponent("Sources/CMNIST/data/SHA256SUMS"), encoding: .utf8)
    let expected = Dictionary(
      uniqueKeysWithValues: sums.split(separator: "\n").map { line -> (String, String) in
        let parts = line.split(separator: " ", omittingEmptySubsequences: true)
        return (String(parts[1]), String(parts[0]))
      })
    XCTAssertEqual(Set(expected.keys), Set(Dataset.fileNames))
    for name in Dataset.fileNames {
      let gz = try XCTUnwrap(Dataset.bundledMNISTFile(name))
      let raw = try gunzip(gz)
      XCTAssertEqual(SHA256.hex(raw), expected[name], name)
    }
  }

  func testBundledMNISTShapesAndClassCounts() throws {
    let mnist = try Dataset.bundledMNIST()
    XCTAssertEqual(mnist.train.count, 60_000)
    XCTAssertEqual(mnist.test.count, 10_000)
    XCTAssertEqual(try mnist.train.pixels.count, 60_000 * 784)
    var counts = [Int](repeating: 0, count: 10)
    for label in mnist.test.labels { counts[Int(label)] += 1 }
    XCTAssertEqual(counts, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
  }

  func testRawAndGzipFilesDecodeTheSame() throws {
    let directory = try writeDataset(images: 5, labels: 5, gzip: false)
    let gzipped = try writeDataset(images: 5, labels: 5, gzip: true)
    let raw = try Dataset.load(directory: directory.path, name: "raw")
    let compressed = try Dataset.load(directory: gzipped.path, name: "gz")
    XCTAssertEqual(try raw.train.pixels, try compressed.train.pixels)
    XCTAssertEqual(raw.test.labels, compressed.test.labels)
    XCTAssertEqual(raw.train.labels, [0, 1, 2, 3, 4])
  }

  /// A gzip file of several members (`cat a.gz b.gz`) decodes as `gzip -d` does; bytes
  /// after the last member that are not a member are refused.
  func testMultiMemberGzipDecodesAndTrailingBytesAreRefused() throws {
    let images = idxImages(count: 4)
    let split = 1000
    let twoMembers = try gzip(Array(images[..<split])) + (try gzip(Array(images[split...])))
    XCTAssertEqual(try gunzip(twoMembers), images, "gzip -d agrees it is one file")
    let decoded = try IDXFile.decode(twoMembers, name: "f", dimensionCount: 3)
    XCTAssertEqual(decoded.bytes, Array(images[16...]))
    for trailing: [UInt8] in [[0x67, 0x61, 0x72, 0x62, 0x61, 0x67, 0x65], [0], [0x1f]] {
      XCTAssertThrowsError(try IDXFile.decode(try gzip(images) + trailing, name: "f", dimensionCount: 3)) {
        XCTAssertTrue("\($0)".contains("f: unexpected bytes after the gzip data (\(trailing.count) bytes"), "\($0)")
      }
    }
  }

  func testBadInputGivesOneLineErrors() throws {
    func expectError(_ fragment: String, _ load: () throws -> Void, line: UInt = #line) {
      XCTAssertThrowsError(try load(), line: line) { error in
        let text = "\(error)"
        XCTAssertTrue(error is PTrainError, "not a PTrainError: \(text)", line: line)
        XCTAssertFalse(text.contains("\n"), "multi-line: \(text)", line: line)
        XCTAssertTrue(text.contains(fragment), "'\(text)' lacks '\(fragment)'", line: line)
      }
    }
    expectError("No such file or directory") { _ = try Dataset.load(directory: "/nonexistent/mnist", name: "x") }

    let missing = try writeDataset(images: 3, labels: 3, gzip: false)
    try FileManager.default.removeItem(at: missing.appendingPathComponent("t10k-labels-idx1-ubyte"))
    expectError("neither t10k-labels-idx1-ubyte nor") { _ = try Dataset.load(directory: missing.path, name: "x") }

    let images = idxImages(count: 4)
    expectError("truncated") { _ = try IDXFile.decode(Array(images.prefix(3)), name: "f", dimensionCount: 3) }
    expectError("truncated") { _ = try IDXFile.decode(Array(images.dropLast(5)), name: "f", dimensionCount: 3) }
    expectError("truncated") {
      _ = try IDXFile.decode(Array(try gzip(images).dropLast(20)), name: "f", dimensionCount: 3)
    }
    expectError("unexpected bytes") { _ = try IDXFile.decode(images + [1, 2], name: "f", dimensionCount: 3) }
    expectError("magic 0x00000801") { _ = try IDXFile.decode(idxLabels(count: 4), name: "f", dimensionCount: 3) }
    expectError("magic 0x7f454c46") {
      _ = try IDXFile.decode([0x7f, 0x45, 0x4c, 0x46] + images.dropFirst(4), name: "f", dimensionCount: 3)
    }
    // 2^31 images of 28×28: refused from the header, before any allocation.
    var absurd = images
    absurd.replaceSubrange(4..<8, with: [0x80, 0, 0, 0])
    expectError("absurd dimensions") { _ = try IDXFile.decode(absurd, name: "f", dimensionCount: 3) }
    expectError("absurd dimensions") { _ = try IDXFile.decode(try gzip(absurd), name: "f", dimensionCount: 3) }
    // Within the limit, but more than a tiny gzip file could ever inflate to.
    absurd.replaceSubrange(4..<8, with: [0, 0x10, 0, 0])
    expectError("can hold at most") { _ = try IDXFile.decode(try gzip(absurd), name: "f", dimensionCount: 3) }

    let mismatched = try writeDataset(images: 4, labels: 3, gzip: true)
    expectError("4 images but 3 labels") { _ = try Dataset.load(directory: mismatched.path, name: "x") }
    let badLabel = try writeDataset(images: 3, labels: 3, gzip: false, labelValue: 10)
    expectError("label 10 at index 0 is not below the 10 classes") {
      _ = try Dataset.load(directory: badLabel.path, name: "x")
    }
    // IDX images of any size load; the model decides whether they fit (ModelTests).
    let otherSize = try makeTemporaryDirectory()
    for name in Dataset.fileNames {
      let bytes = name.contains("images") ? idxImages(count: 2, rows: 32, columns: 24) : idxLabels(count: 2)
      try Data(bytes).write(to: otherSize.appendingPathComponent(name))
    }
    XCTAssertEqual(try Dataset.load(directory: otherSize.path, name: "x").train.shape.description, "32x24x1")
    let mixed = try makeTemporaryDirectory()
    for name in Dataset.fileNames {
      let bytes =
        name.contains("images")
        ? idxImages(count: 2, rows: name.hasPrefix("t10k") ? 28 : 32, columns: 28)
        : idxLabels(count: 2)
      try Data(bytes).write(to: mixed.appendingPathComponent(name))
    }
    expectError("training images are 32x28x1 but test images are 28x28x1") {
      _ = try Dataset.load(directory: mixed.path, name: "x")
    }
    expectError("apt-get install dataset-fashion-mnist") {
      _ = try Dataset.fashionMNIST(directory: "/nonexistent/fashion")
    }
  }

  // MARK: - Helpers

  func idxImages(count: Int, rows: Int = 28, columns: Int = 28) -> [UInt8] {
    var bytes: [UInt8] = [0, 0, 8, 3]
    for d in [count, rows, columns] { bytes += withUnsafeBytes(of: UInt32(d).bigEndian, Array.init) }
    let pixels: [UInt8] = (0..<(count * rows * columns)).map { UInt8(truncatingIfNeeded: $0 * 7) }
    return bytes + pixels
  }

  func idxLabels(count: Int, value: UInt8? = nil) -> [UInt8] {
    let header: [UInt8] = [0, 0, 8, 1] + withUnsafeBytes(of: UInt32(count).bigEndian, Array.init)
    let labels: [UInt8] = (0..<count).map { value ?? UInt8($0 % 10) }
    return header + labels
  }

  /// A directory with all four files, gzipped or raw.
  func writeDataset(images: Int, labels: Int, gzip compress: Bool, labelValue: UInt8? = nil) throws -> URL {
    let directory = try makeTemporaryDirectory()
    for name in Dataset.fileNames {
      let raw = name.contains("images") ? idxImages(count: images) : idxLabels(count: labels, value: labelValue)
      let url = directory.appendingPathComponent(compress ? name + ".gz" : name)
      try Data(compress ? try gzip(raw) : raw).write(to: url)
    }
    return directory
  }

  func gzip(_ bytes: [UInt8]) throws -> [UInt8] { try pipe(bytes, through: ["gzip", "-c"]) }
  func gunzip(_ bytes: [UInt8]) throws -> [UInt8] { try pipe(bytes, through: ["gzip", "-dc"]) }

  func pipe(_ bytes: [UInt8], through command: [String]) throws -> [UInt8] {
    let directory = try makeTemporaryDirectory()
    let input = directory.appendingPathComponent("in")
    try Data(bytes).write(to: input)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = command + [input.path]
    let output = Pipe()
    process.standardOutput = output
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return Array(data)
  }
}
