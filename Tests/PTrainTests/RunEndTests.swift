import Foundation
import PTrain
import XCTest

/// The end of a run: what is written, and in which order, when the test outputs overflow
/// or the report cannot be written; nothing that was computed is lost.
final class RunEndTests: XCTestCase {
  /// IDX files of 28×28 images: `train` black training images and `test` white test ones.
  func darkTrainingBrightTest(train: Int = 64, test: Int = 16) throws -> String {
    let directory = try makeTemporaryDirectory()
    for (prefix, count, value) in [("train", train, UInt8(0)), ("t10k", test, UInt8(255))] {
      let header = [UInt32(count), 28, 28].flatMap { withUnsafeBytes(of: $0.bigEndian, Array.init) }
      try Data([0, 0, 8, 3] + header + [UInt8](repeating: value, count: count * 784))
        .write(to: directory.appendingPathComponent("\(prefix)-images-idx3-ubyte"))
      try Data(
        [0, 0, 8, 1] + withUnsafeBytes(of: UInt32(count).bigEndian, Array.init) + (0..<count).map { UInt8($0 % 10) }
      )
      .write(to: directory.appendingPathComponent("\(prefix)-labels-idx1-ubyte"))
    }
    return directory.path
  }

  /// Test images whose standardised values overflow the outputs: the run still saves, its
  /// JSON carries the loss as null with the count of overflowed images, and the human
  /// output and evaluate say why.
  func testNonFiniteTestLossIsReportedNotLost() throws {
    let data = try darkTrainingBrightTest()
    let path = try makeTemporaryDirectory().appendingPathComponent("run.safetensors").path
    let flags = ["--data", data, "--normalize", "0,1e-38", "--epochs", "1", "--save", path]
    let json = try runPTrain(flags + ["--json", "--quiet"])
    XCTAssertEqual(json.status, 0, json.stderr)
    let summary = try json.json()
    XCTAssertTrue(summary["test_loss"] is NSNull, "\(summary["test_loss"] ?? "absent")")
    XCTAssertEqual(summary["test_non_finite"] as? Int, 16)
    XCTAssertTrue(json.stderr.contains("the outputs of 16 of 16 test images overflowed"), json.stderr)
    XCTAssertNoThrow(try Checkpoint(path: path))
    let human = try runPTrain(flags)
    XCTAssertEqual(human.status, 0, human.stderr)
    XCTAssertTrue(human.stdout.hasSuffix("test loss not finite\n") || human.stdout.contains("test loss not finite  "))
    XCTAssertFalse(human.stdout.contains("nan"), human.stdout)
    let evaluation = try runPTrain(["evaluate", path, "--json"])
    XCTAssertEqual(evaluation.status, 0, evaluation.stderr)
    XCTAssertTrue(try evaluation.json()["test_loss"] is NSNull)
    XCTAssertTrue(evaluation.stderr.contains("overflowed"), evaluation.stderr)
    let text = try runPTrain(["evaluate", path])
    XCTAssertTrue(text.stdout.contains("test loss not finite"), text.stdout)
    XCTAssertTrue(text.stderr.contains("overflowed"), text.stderr)
    let report = path + ".html"
    XCTAssertEqual(try runPTrain(["report", path, "-o", report]).status, 0)
    let decoded = try runPTrain(["report", try writeSummary(json.stdout), "-o", report])
    XCTAssertEqual(decoded.status, 0, "a summary with a null loss reads back: \(decoded.stderr)")
  }

  func writeSummary(_ text: String) throws -> String {
    let path = try makeTemporaryDirectory().appendingPathComponent("run.json").path
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    return path
  }

  /// A report whose directory is removed during training: the checkpoint and the JSON
  /// summary are written first, and the failure (exit 1) names the saved checkpoint.
  func testAReportThatCannotBeWrittenLosesNothing() throws {
    let directory = try makeTemporaryDirectory()
    let checkpoint = directory.appendingPathComponent("run.safetensors").path
    let reports = directory.appendingPathComponent("reports")
    try FileManager.default.createDirectory(at: reports, withIntermediateDirectories: false)
    let out = directory.appendingPathComponent("out.json").path
    let script = """
      "$PTRAIN" --train-limit 6400 --epochs 2 --save '\(checkpoint)' --report '\(reports.path)/r.html' --json \
        > '\(out)' 2> '\(directory.path)/err' &
      pid=$!
      until grep -q "ptrain: training" '\(directory.path)/err'; do sleep 0.01; done
      rm -r '\(reports.path)'
      wait $pid
      status=$?
      cat '\(directory.path)/err' >&2
      exit $status
      """
    let result = try runPTrainInShell(script)
    XCTAssertEqual(result.status, 1, result.stderr)
    XCTAssertTrue(result.stderr.contains("ptrain: error: --report"), result.stderr)
    XCTAssertTrue(result.stderr.contains("the checkpoint is saved to \(checkpoint)"), result.stderr)
    XCTAssertEqual(try Checkpoint(path: checkpoint).metadata["epochs_completed"], "2")
    let summary = try CLIResult(status: 0, stdout: String(contentsOfFile: out, encoding: .utf8), stderr: "").json()
    XCTAssertEqual(summary["checkpoint"] as? String, checkpoint)
  }
}
