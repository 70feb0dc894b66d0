import Foundation
import PTrain
import XCTest

/// Outputs never overwrite inputs or each other (compared as files, after symlinks), and
/// two runs never save to one file at once.
final class OutputPathTests: XCTestCase {
  let tiny = ["--train-limit", "320", "--epochs", "1", "--quiet"]

  /// A copy of the bundled MNIST's four files (gzipped) in a fresh directory.
  func mnistDirectory() throws -> URL {
    let directory = try makeTemporaryDirectory()
    try writeBundledMNIST(to: directory)
    return directory
  }

  func testAnOutputThatIsAnInputIsRefusedBeforeAnyWork() throws {
    let directory = try makeTemporaryDirectory()
    let checkpoint = directory.appendingPathComponent("ck.safetensors").path
    XCTAssertEqual(try runPTrain(tiny + ["--save", checkpoint, "--json"]).status, 0)
    let link = directory.appendingPathComponent("link.safetensors").path
    try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: checkpoint)
    let summary = directory.appendingPathComponent("run.json").path
    try Data(try runPTrain(tiny + ["--json"]).stdout.utf8).write(to: URL(fileURLWithPath: summary))
    let data = try mnistDirectory()
    let images = data.appendingPathComponent("train-images-idx3-ubyte.gz").path
    let before = try Data(contentsOf: URL(fileURLWithPath: checkpoint))
    let cases: [([String], String)] = [
      (["report", checkpoint, "-o", checkpoint], "--output \(checkpoint) is SOURCE"),
      (["report", checkpoint, "-o", link], "--output \(link) is SOURCE"),
      (["report", summary, "-o", summary], "--output \(summary) is SOURCE"),
      (["finetune", "--from", checkpoint, "--report", link] + tiny, "--report \(link) is --from"),
      (["finetune", "--from", link, "--save", checkpoint] + tiny, "--save \(checkpoint) is --from"),
      (["--data", data.path, "--save", images] + tiny, "--save \(images) is the data's train-images-idx3-ubyte.gz"),
      (["--data", data.path, "--report", images] + tiny, "is the data's train-images-idx3-ubyte.gz"),
      (["--save", checkpoint, "--report", link] + tiny, "--save and --report name the same file"),
      (["--save", directory.path + "/new.x", "--report", directory.path + "/./new.x"] + tiny, "name the same file"),
      (["train", "--resume", checkpoint, "--report", link, "--epochs", "2"], "--report \(link) is --resume"),
      (["gradient", "--data", data.path, "-o", images], "--output \(images) is the data's"),
    ]
    for (arguments, fragment) in cases {
      assertRefused(try runPTrain(arguments), status: 64, fragment)
    }
    XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: checkpoint)), before, "the input is untouched")
    XCTAssertEqual(
      try Data(contentsOf: URL(fileURLWithPath: images)), Data(Dataset.bundledMNISTFile("train-images-idx3-ubyte")!))
    // A resume saves back to its own file, as it always has.
    XCTAssertEqual(try runPTrain(["train", "--resume", checkpoint, "--epochs", "2", "--quiet"]).status, 0)
  }

  /// A second run saving to the file a running one saves to is refused (exit 1), naming
  /// the first; the first finishes and its lock file goes with it.
  func testTwoRunsCannotSaveToOneFileAtOnce() throws {
    let directory = try makeTemporaryDirectory()
    let checkpoint = directory.appendingPathComponent("run.safetensors").path
    let other = directory.path + "/./run.safetensors"  // another spelling of the same file
    let script = """
      "$PTRAIN" --train-limit 6400 --epochs 3 --save '\(checkpoint)' 2> '\(directory.path)/first' &
      pid=$!
      until grep -q "ptrain: training" '\(directory.path)/first'; do sleep 0.01; done
      "$PTRAIN" --train-limit 320 --epochs 1 --quiet --save '\(other)'
      second=$?
      wait $pid
      echo "first=$? second=$second"
      """
    let result = try runPTrainInShell(script)
    XCTAssertTrue(result.stdout.contains("first=0 second=1"), result.stdout + result.stderr)
    XCTAssertTrue(result.stderr.contains("is being saved by another ptrain run (process "), result.stderr)
    XCTAssertEqual(try Checkpoint(path: checkpoint).metadata["epochs_completed"], "3")
    XCTAssertFalse(
      try FileManager.default.contentsOfDirectory(atPath: directory.path).contains { $0.hasSuffix(".lock") },
      "the lock file is removed at exit")
  }

  /// Both the raw and the gzipped copy of an IDX file, or CIFAR-10 and IDX files, in one
  /// data directory are refused: which one is read would be a guess.
  func testADataDirectoryWithTwoCopiesIsRefused() throws {
    let data = try mnistDirectory()
    let raw = data.appendingPathComponent("t10k-labels-idx1-ubyte")
    try Data([0, 0, 8, 1, 0, 0, 0, 0]).write(to: raw)
    assertRefused(
      try runPTrain(["--data", data.path] + tiny), status: 1,
      "holds both t10k-labels-idx1-ubyte and t10k-labels-idx1-ubyte.gz")
    try FileManager.default.removeItem(at: raw)
    try Data().write(to: data.appendingPathComponent("test_batch.bin"))
    assertRefused(try runPTrain(["--data", data.path] + tiny), status: 1, "holds both CIFAR-10's binary files and IDX")
  }
}
