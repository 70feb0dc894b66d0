import Foundation
import XCTest

@testable import PTrain

/// An image folder end to end through the binary: train, evaluate and summarise its
/// checkpoint with no flags, and predict new images with it.
final class PredictCLITests: XCTestCase {
  static let model = "conv 8 3x3 same, relu, maxpool 2, flatten, dense 2"

  /// ROOT/train/{bright,dark}/N.png (16 × 16 RGB, 24 each) and ROOT/test/… (6 each):
  /// bright images have bytes from 155 up, dark ones below 100.
  func makeFolder(test: Bool = true) throws -> URL {
    let root = try makeTemporaryDirectory().appendingPathComponent("shades")
    var generator = SeededGenerator(seed: 3)
    for (split, count) in [("train", 24), ("test", test ? 6 : 0)] {
      for (name, range) in [("bright", UInt8(155)...255), ("dark", UInt8(0)...99)] {
        for index in 0..<count {
          let pixels = (0..<(16 * 16 * 3)).map { _ in UInt8.random(in: range, using: &generator) }
          try ImageFixtures.write(
            ImageFixtures.png(width: 16, height: 16, channels: 3, pixels: pixels),
            to: root.appendingPathComponent("\(split)/\(name)/\(index).png"))
        }
      }
    }
    return root
  }

  func train(_ root: URL, threads: Int, save: String? = nil, extra: [String] = []) throws -> CLIResult {
    try runPTrain(
      [
        "--data", root.path, "--model", Self.model, "--epochs", "2", "--batch-size", "8", "--threads", String(threads),
        "--json",
      ] + (save.map { ["--save", $0] } ?? []) + extra)
  }

  func testAnImageFolderTrainsAndItsCheckpointNeedsNoFlags() throws {
    let root = try makeFolder()
    let checkpoint = root.deletingLastPathComponent().appendingPathComponent("shades.safetensors").path
    let trained = try train(root, threads: 2, save: checkpoint)
    XCTAssertEqual(trained.status, 0, trained.stderr)
    XCTAssertTrue(
      trained.stderr.contains("48 train, 12 test images; images resized to 16x16 (the most common size), 3 channel(s)"),
      trained.stderr)
    let summary = try trained.json()
    XCTAssertEqual(summary["class_names"] as? [String], ["bright", "dark"])
    XCTAssertGreaterThan(try XCTUnwrap(summary["test_accuracy"] as? Double), 0.9, "the shades are easy to tell")
    let oneThread = try train(root, threads: 1)
    XCTAssertEqual(oneThread.status, 0, oneThread.stderr)
    XCTAssertEqual(
      try oneThread.json()["parameters_sha256"] as? String, summary["parameters_sha256"] as? String,
      "decoded images and training give the same bits at any thread count")

    let saved = try Checkpoint(path: checkpoint)
    XCTAssertEqual(saved.metadata["class_names"], #"["bright","dark"]"#)
    XCTAssertEqual(saved.metadata["image_size"], "16x16")
    XCTAssertEqual(saved.classNames, ["bright", "dark"])

    let evaluated = try runPTrain(["evaluate", checkpoint, "--json"])
    XCTAssertEqual(evaluated.status, 0, evaluated.stderr)
    XCTAssertEqual(try evaluated.json()["test_images"] as? Int, 12)
    XCTAssertEqual(try evaluated.json()["test_accuracy"] as? Double, summary["test_accuracy"] as? Double)
    let deprecated = try runPTrain(["evaluate", "--model", checkpoint, "--json"])
    XCTAssertEqual(deprecated.status, 0, deprecated.stderr)
    XCTAssertTrue(deprecated.stderr.contains("--model PATH is deprecated"), deprecated.stderr)

    let described = try runPTrain(["summary", checkpoint])
    XCTAssertEqual(described.status, 0, described.stderr)
    for text in ["checkpoint: \(checkpoint)", "bright, dark", "16x16", "model: custom, input 16x16x3"] {
      XCTAssertTrue(described.stdout.contains(text), "\(text) in \(described.stdout)")
    }
  }

  func testPredictRanksTheClassesOfImagesFoldersAndIDXFiles() throws {
    let root = try makeFolder()
    let checkpoint = root.deletingLastPathComponent().appendingPathComponent("shades.safetensors").path
    XCTAssertEqual(try train(root, threads: 2, save: checkpoint).status, 0)
    let predicted = try runPTrain(["predict", checkpoint, root.appendingPathComponent("test").path, "--json"])
    XCTAssertEqual(predicted.status, 0, predicted.stderr)
    let images = try XCTUnwrap(try predicted.json()["images"] as? [[String: Any]])
    XCTAssertEqual(images.count, 12)
    // predict's top classes give evaluate's confusion matrix, image by image.
    var confusion = [[0, 0], [0, 0]]
    for image in images {
      let name = try XCTUnwrap(image["image"] as? String)
      let top = try XCTUnwrap(image["top"] as? [[String: Any]])
      XCTAssertEqual(top.count, 2, "--top 3 of 2 classes")
      let predicted = top[0]["class_name"] as? String == "bright" ? 0 : 1
      confusion[name.contains("/bright/") ? 0 : 1][predicted] += 1
      let probabilities = try XCTUnwrap(image["probabilities"] as? [Double])
      XCTAssertEqual(probabilities.reduce(0, +), 1, accuracy: 1e-5)
    }
    let evaluated = try runPTrain(["evaluate", checkpoint, "--json"])
    XCTAssertEqual(evaluated.status, 0, evaluated.stderr)
    XCTAssertEqual(try evaluated.json()["confusion_matrix"] as? [[Int]], confusion)
    let one = root.appendingPathComponent("test/dark/0.png").path
    let text = try runPTrain(["predict", checkpoint, one, "--top", "1"])
    XCTAssertEqual(text.status, 0, text.stderr)
    XCTAssertTrue(text.stdout.hasPrefix("\(one): dark "), text.stdout)
    XCTAssertTrue(text.stdout.hasSuffix("%\n"), text.stdout)

    // Two 20 × 20 gray images in an IDX file: spread to RGB and resized to 16 × 16.
    var idx: [UInt8] = [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 20, 0, 0, 0, 20]
    idx += [UInt8](repeating: 250, count: 400) + [UInt8](repeating: 10, count: 400)
    let idxPath = root.deletingLastPathComponent().appendingPathComponent("two-idx3-ubyte").path
    try Data(idx).write(to: URL(fileURLWithPath: idxPath))
    let fromIDX = try runPTrain(["predict", checkpoint, idxPath, "--top", "1"])
    XCTAssertEqual(fromIDX.status, 0, fromIDX.stderr)
    let names = fromIDX.stdout.split(separator: "\n").map { line -> String in String(line.split(separator: " ")[0]) }
    XCTAssertEqual(names, ["\(idxPath)[0]:", "\(idxPath)[1]:"])
    XCTAssertTrue(fromIDX.stdout.contains("[0]: bright"), fromIDX.stdout)

    let broken = root.appendingPathComponent("test/dark/broken.png").path
    try Data("no".utf8).write(to: URL(fileURLWithPath: broken))
    let refused = try runPTrain(["predict", checkpoint, broken])
    XCTAssertEqual(refused.status, 1)
    XCTAssertTrue(refused.stderr.hasPrefix("ptrain: error: \(broken): is not a PNG or JPEG image"), refused.stderr)
    XCTAssertEqual(try runPTrain(["predict", checkpoint, one, "--top", "0"]).status, 64)
  }

  func testAFolderWithoutTestTrainsOnAValidationSplit() throws {
    let root = try makeFolder(test: false)
    let refused = try train(root, threads: 2)
    XCTAssertEqual(refused.status, 64)
    XCTAssertTrue(refused.stderr.contains("has no test/ folder: pass --validation-split"), refused.stderr)
    let report = root.deletingLastPathComponent().appendingPathComponent("report.html")
    let trained = try runPTrain([
      "--data", root.path, "--model", Self.model, "--epochs", "1", "--batch-size", "8", "--validation-split", "8",
      "--report", report.path,
    ])
    XCTAssertEqual(trained.status, 0, trained.stderr)
    XCTAssertTrue(trained.stderr.contains("no test set (no test/ folder"), trained.stderr)
    XCTAssertTrue(trained.stdout.split(separator: "\n").last!.hasPrefix("validation accuracy"), trained.stdout)
    let page = try String(contentsOf: report, encoding: .utf8)
    XCTAssertTrue(page.contains("<th>validation</th>"), "the report names the set of its final figures")
    XCTAssertFalse(page.contains("<th>test</th>"))
  }

  func testVersion() throws {
    let result = try runPTrain(["--version"])
    XCTAssertEqual(result.status, 0)
    XCTAssertTrue(result.stdout.hasPrefix(PTrainVersion.release), result.stdout)
  }
}
