import Foundation
import PTrain
import XCTest

/// `--validation-split`, `--save-best` and `--early-stop` through the binary.
final class ValidationOptionsTests: XCTestCase {
  static let tiny = ["train", "--train-limit", "640", "--threads", "2", "--learning-rate", "0.01"]

  /// Epochs are judged on the held-out images and the test set once at the end; the best
  /// epoch's checkpoint is kept; the early stop ends the run as a finished one.
  func testValidationBestAndEarlyStop() throws {
    let directory = try makeTemporaryDirectory()
    let best = directory.appendingPathComponent("best.safetensors").path
    let last = directory.appendingPathComponent("last.safetensors").path
    let result = try runPTrain(
      Self.tiny + [
        "--epochs", "8", "--validation-split", "0.1", "--save-best", best, "--early-stop", "1", "--save", last,
        "--json",
      ])
    XCTAssertEqual(result.status, 0, result.stderr)
    XCTAssertTrue(result.stderr.contains("576 of 60000 train, 64 validation (each epoch), 10000 test images (once"))
    XCTAssertTrue(result.stderr.contains("val acc"), result.stderr)
    let json = try result.json()
    let validation = try XCTUnwrap(json["validation"] as? [String: Any])
    XCTAssertEqual(validation["images"] as? Int, 64)
    let history = try XCTUnwrap(json["history"] as? [[String: Any]])
    XCTAssertNil(history[0]["test_accuracy"])
    let accuracies = history.compactMap { $0["validation_accuracy"] as? Double }
    XCTAssertEqual(accuracies.count, history.count)
    let bestEpoch = try XCTUnwrap(validation["best_epoch"] as? Int)
    XCTAssertEqual(accuracies[bestEpoch - 1], accuracies.max())
    XCTAssertEqual(accuracies.firstIndex(of: accuracies.max()!), bestEpoch - 1, "the first epoch of the best")
    if let stoppedAfter = validation["early_stopped_after_epoch"] as? Int {
      XCTAssertEqual(stoppedAfter, bestEpoch + 1)
      XCTAssertTrue(result.stderr.contains("early stop after epoch \(stoppedAfter)"), result.stderr)
    } else {
      XCTAssertEqual(history.count, 8)
    }
    let kept = try Checkpoint(path: best)
    XCTAssertEqual(kept.metadata["best_epoch"], String(bestEpoch))
    XCTAssertEqual(kept.metadata["epochs_completed"], String(bestEpoch))
    XCTAssertEqual(kept.metadata["validation_split"], "64")
  }

  /// A run with a split, stopped mid-epoch and resumed at another thread count, ends with
  /// the bits of the uninterrupted run: the split is made again from the checkpoint.
  func testResumedSplitRunKeepsTheBits() throws {
    let directory = try makeTemporaryDirectory()
    let path = directory.appendingPathComponent("split.safetensors").path
    let arguments = Self.tiny + ["--epochs", "2", "--validation-split", "100", "--json", "--quiet"]
    let straight = try runPTrain(arguments)
    XCTAssertEqual(straight.status, 0, straight.stderr)
    let first = try runPTrain(Self.tiny + ["--epochs", "1", "--validation-split", "100", "--save", path, "--quiet"])
    XCTAssertEqual(first.status, 0, first.stderr)
    let afterOneEpoch = directory.appendingPathComponent("one-epoch.safetensors").path
    try FileManager.default.copyItem(atPath: path, toPath: afterOneEpoch)
    let resumed = try runPTrain(["train", "--resume", path, "--epochs", "2", "--threads", "1", "--json", "--quiet"])
    XCTAssertEqual(resumed.status, 0, resumed.stderr)
    XCTAssertEqual(
      try resumed.json()["parameters_sha256"] as? String, try straight.json()["parameters_sha256"] as? String)
    assertRefused(
      try runPTrain(["train", "--resume", path, "--epochs", "3", "--validation-split", "50"]), status: 64,
      "--validation-split 50 differs from")
    assertRefused(
      try runPTrain(["train", "--resume", path, "--epochs", "3", "--save-best", path]), status: 64,
      "--save-best \(path) is")
    let edited = directory.appendingPathComponent("edited.safetensors").path
    for (change, fragment) in [
      (["best_epoch": "-5"], "best_epoch an epoch it finished"),
      (["best_epoch": "2"], "best_epoch an epoch it finished"),
      (["best_validation_accuracy": "nan"], "best_validation_accuracy must be from 0 to 1"),
      (["early_stop": "0"], "early_stop is not an integer"),
    ] {
      try rewriteMetadata(afterOneEpoch, to: edited, change)
      assertRefused(try runPTrain(["train", "--resume", edited, "--epochs", "3"]), status: 1, fragment)
    }
  }

  func testBadValidationFlagsAreRefused() throws {
    let best = try makeTemporaryDirectory().appendingPathComponent("b.safetensors").path
    for (flags, fragment) in [
      (["--validation-split", "1.5"], "validation split '1.5'"),
      (["--validation-split", "640"], "leaves none of the 640 training images"),
      (["--save-best", best], "--save-best needs --validation-split"),
      (["--early-stop", "2"], "--early-stop needs --validation-split"),
      (["--validation-split", "10", "--early-stop", "0"], "--early-stop must be at least 1"),
      (["--validation-split", "10", "--save-best", best, "--save", best], "give the best epoch a file of its own"),
    ] {
      assertRefused(try runPTrain(Self.tiny + flags), status: 64, fragment)
    }
  }
}
