import Foundation
import PTrain
import XCTest

/// Flags that contradict each other or the data, numbers that look like flags, sizes the
/// machine cannot hold, and what ptrain says: one line that names the problem.
final class FlagAndMessageTests: XCTestCase {
  let tiny = ["--train-limit", "320", "--epochs", "1", "--quiet"]

  /// A negative number is the flag's value, refused by its own rule, not "Missing value".
  func testNegativeNumbersAreValues() throws {
    let cases: [([String], String)] = [
      (["--epochs", "-1"], "--epochs must be at least 1, got -1"),
      (["--threads", "-2"], "--threads must be at least 1, got -2"),
      (["--batch-size", "-5"], "--batch-size must be at least 1, got -5"),
      (["--train-limit", "-3", "--epochs", "1"], "--train-limit must be at least 1, got -3"),
      (["bench", "--steps", "-4"], "--steps must be at least 1, got -4"),
    ]
    for (arguments, fragment) in cases {
      assertRefused(try runPTrain(arguments), status: 64, fragment)
    }
  }

  /// `--log-every` without anywhere to log is refused; bench says when its data holds
  /// fewer steps than asked.
  func testContradictionsAreSaid() throws {
    assertRefused(try runPTrain(tiny + ["--log-every", "5"]), status: 64, "--log-every needs --logdir")
    let bench = try runPTrain(
      ["bench", "--batch-size", "20000", "--steps", "4", "--threads", "1"], signals: [(SIGKILL, "timing 3 steps")])
    XCTAssertTrue(
      bench.stderr.contains(
        "--steps 4 of 20000 images needs 80000 images, but the bench data has 60000: timing 3 steps"),
      bench.stderr)
  }

  /// The command the interrupt message gives, with `--checkpoint-every`, resumes.
  func testTheResumeHintRuns() throws {
    let path = try makeTemporaryDirectory().appendingPathComponent("run.safetensors").path
    let interrupted = try runPTrain(
      ["--train-limit", "6400", "--epochs", "3", "--save", path, "--checkpoint-every", "20"],
      signals: [(SIGINT, "epoch 1 ")])
    XCTAssertEqual(interrupted.status, 130, interrupted.stderr)
    let hint = try XCTUnwrap(
      interrupted.stderr.components(separatedBy: "continue with: ").last?.split(separator: "\n").first)
    XCTAssertTrue(hint.hasSuffix("train --resume \(path) --checkpoint-every 20"), String(hint))
    let resumed = try runPTrainInShell(String(hint) + " --quiet")
    XCTAssertEqual(resumed.status, 0, resumed.stderr)
  }

  /// A batch far above the data allocates for the data (1.5 GB of address space suffice
  /// for a batch of 65,536 on 320 images; a whole batch's gradient slots need 2.3 GB).
  /// The sanitizers' shadow memory needs more address space than any such limit.
  func testABatchAboveTheDataAllocatesForTheData() throws {
    let program = dlopen(nil, RTLD_NOW)
    if dlsym(program, "__asan_init") != nil || dlsym(program, "__tsan_init") != nil {
      throw XCTSkip("a sanitizer's shadow memory does not fit a limited address space")
    }
    let huge = try runPTrainInShell("ulimit -v 1500000; \"$PTRAIN\" --batch-size 65536 " + tiny.joined(separator: " "))
    XCTAssertEqual(huge.status, 0, "a step is all 320 images, not 65,536: \(huge.stderr)")
  }

  /// A model too big for the memory is refused with the figure, which `summary` shows
  /// too, counted beyond 2^32.
  func testSizesFollowTheMemory() throws {
    let big = "input 28x28x1, flatten, dense 65536, dense 65536, dense 10"
    let refused = try runPTrain(["--model", big] + tiny)
    assertRefused(refused, status: 1, "training this model needs about")
    XCTAssertTrue(refused.stderr.contains("of memory are available"), refused.stderr)
    let summary = try runPTrain(["summary", "--model", big, "--threads", "2"])
    XCTAssertEqual(summary.status, 0, summary.stderr)
    XCTAssertTrue(summary.stdout.contains("dense 65536  65536   4,295,032,832"), summary.stdout)
    XCTAssertTrue(summary.stdout.contains("total: 4,347,133,962 parameters"), summary.stdout)
    XCTAssertTrue(summary.stdout.contains("training memory at batch 32 on 2 thread(s): about 178.2 GB"), summary.stdout)
    let json = try runPTrain(["summary", "--model", "mnist-cnn", "--json"])
    XCTAssertGreaterThan(try json.json()["training_memory_bytes"] as? Int ?? 0, 1 << 20)
    let shapes = try runPTrain(["summary", "--model", "input 1000x1000x4, conv 4096 1x1, flatten, dense 10"])
    XCTAssertTrue(shapes.stdout.contains("1000x1000x4096"), "the shape column is not cut: \(shapes.stdout)")
  }

  /// Permission denied is reported as such (run as an unprivileged user: root reads all).
  func testPermissionDeniedIsNamed() throws {
    try XCTSkipUnless(getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"))
    let directory = try makeTemporaryDirectory()
    try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: directory.path)
    let data = directory.appendingPathComponent("data")
    try FileManager.default.createDirectory(at: data, withIntermediateDirectories: false)
    try writeBundledMNIST(to: data)
    try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: data.path)
    let closed = directory.appendingPathComponent("closed.safetensors")
    try Data().write(to: closed)
    try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: closed.path)
    let nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups \"$PTRAIN\""
    let unreadableData = try runPTrainInShell("\(nobody) --data '\(data.path)' --epochs 1")
    assertRefused(unreadableData, status: 1, "\(data.path)/train-images-idx3-ubyte: Permission denied")
    let unreadableCheckpoint = try runPTrainInShell("\(nobody) evaluate '\(closed.path)'")
    assertRefused(unreadableCheckpoint, status: 1, "\(closed.path): Permission denied")
    let unwritable = try runPTrainInShell("\(nobody) --epochs 1 --save '\(data.path)/x.safetensors'")
    assertRefused(unwritable, status: 64, "Permission denied")
  }

  /// Control characters in a path or a name are shown as `\x1B`, never sent raw to the
  /// terminal or written into the XHTML report.
  func testControlCharactersAreShownNotObeyed() throws {
    let base = try makeTemporaryDirectory()
    let data = base.appendingPathComponent("data\u{1B}[2J\r")
    try FileManager.default.createDirectory(at: data, withIntermediateDirectories: false)
    try writeBundledMNIST(to: data)
    let report = base.appendingPathComponent("r.html").path
    let result = try runPTrain(["--data", data.path, "--train-limit", "320", "--epochs", "1", "--report", report])
    XCTAssertEqual(result.status, 0, result.stderr)
    for text in [result.stdout, result.stderr, try String(contentsOfFile: report, encoding: .utf8)] {
      XCTAssertFalse(text.unicodeScalars.contains { $0 == "\u{1B}" || $0 == "\r" }, text)
    }
    XCTAssertTrue(result.stderr.contains("data\\x1B[2J\\x0D"), result.stderr)
    let missing = try runPTrain(["--data", base.appendingPathComponent("gone\u{1B}]0;x\u{7}\nptrain: forged").path])
    assertRefused(missing, status: 1, "gone\\x1B]0;x\\x07\\nptrain: forged")
  }
}
