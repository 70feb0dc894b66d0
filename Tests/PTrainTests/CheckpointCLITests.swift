import Foundation
import PTrain
import XCTest

/// `--save`, `--resume`, `evaluate`, `finetune` and interrupts, through the binary.
final class CheckpointCLITests: XCTestCase {
  let small = ["--train-limit", "640", "--quiet", "--json"]

  /// `evaluate` reads only the test files: a directory with t10k's two files is enough.
  func testEvaluateNeedsOnlyTheTestFiles() throws {
    let directory = try makeTemporaryDirectory()
    try writeBundledMNIST(to: directory)
    for name in Dataset.fileNames.prefix(2) {
      try FileManager.default.removeItem(at: directory.appendingPathComponent(name + ".gz"))
    }
    let model = directory.appendingPathComponent("m.safetensors").path
    let trained = try runPTrain(small + ["--epochs", "1", "--save", model])
    XCTAssertEqual(trained.status, 0, trained.stderr)
    let evaluated = try runPTrain(["evaluate", model, "--data", directory.path, "--json"])
    XCTAssertEqual(evaluated.status, 0, evaluated.stderr)
    XCTAssertEqual(try evaluated.json()["test_images"] as? Int, 10000)
    XCTAssertEqual(try evaluated.json()["test_accuracy"] as? Double, try trained.json()["test_accuracy"] as? Double)
  }

  func testSaveResumeAndEvaluate() throws {
    let directory = try makeTemporaryDirectory()
    let one = directory.appendingPathComponent("one.safetensors").path
    let straight = try runPTrain(small + ["--epochs", "2", "--threads", "2"])
    XCTAssertEqual(straight.status, 0, straight.stderr)
    let first = try runPTrain(small + ["--epochs", "1", "--threads", "1", "--save", one])
    XCTAssertEqual(first.status, 0, first.stderr)
    XCTAssertEqual(try first.json()["checkpoint"] as? String, one)
    let resumed = try runPTrain(["train", "--resume", one, "--epochs", "2", "--threads", "2", "--quiet", "--json"])
    XCTAssertEqual(resumed.status, 0, resumed.stderr)
    XCTAssertEqual(
      try resumed.json()["parameters_sha256"] as? String, try straight.json()["parameters_sha256"] as? String,
      "1 epoch + resume for the second = 2 epochs straight")
    XCTAssertEqual(try resumed.json()["train_images"] as? Int, 640, "the resume found the same data")
    XCTAssertEqual(try resumed.json()["checkpoint"] as? String, one, "a resume saves back to its file by default")

    let evaluation = try runPTrain(["evaluate", one, "--json"])
    XCTAssertEqual(evaluation.status, 0, evaluation.stderr)
    let evaluated = try evaluation.json()
    let trained = try resumed.json()
    for key in ["test_accuracy", "test_loss", "per_class", "confusion_matrix", "parameters_sha256", "dataset"] {
      XCTAssertNotNil(evaluated[key], key)
      XCTAssertNotNil(trained[key], key)
    }
    XCTAssertEqual(evaluated["test_accuracy"] as? Double, trained["test_accuracy"] as? Double)
    XCTAssertEqual(evaluated["parameters_sha256"] as? String, trained["parameters_sha256"] as? String)
    let text = try runPTrain(["evaluate", one])
    XCTAssertTrue(text.stdout.contains("confusion matrix"), text.stdout)
    XCTAssertTrue(text.stdout.contains("precision  recall"), text.stdout)

    let again = try runPTrain(["train", "--resume", one, "--quiet"])
    XCTAssertEqual(
      again.stderr,
      "ptrain: error: \(one) has already finished 2 epoch(s); pass --epochs with a larger total to train on\n")
  }

  /// Head-only fine-tuning keeps the convolutions' bits and trains a new head.
  func testFinetuneFreezesLayersAndReplacesTheHead() throws {
    let directory = try makeTemporaryDirectory()
    let pre = directory.appendingPathComponent("pre.safetensors").path
    let tuned = directory.appendingPathComponent("tuned.safetensors").path
    XCTAssertEqual(try runPTrain(small + ["--epochs", "1", "--save", pre]).status, 0)
    let result = try runPTrain(
      [
        "finetune", "--from", pre, "--freeze", "conv1,3", "--new-head", "--train-limit", "320", "--epochs", "1",
        "--save", tuned, "--json", "--quiet", "--seed", "7",
      ])
    XCTAssertEqual(result.status, 0, result.stderr)
    let before = try SafeTensors.read(path: pre)
    let after = try SafeTensors.read(path: tuned)
    for name in ["0.weight", "0.bias", "3.weight", "3.bias"] {
      XCTAssertEqual(try after.floats(name), try before.floats(name), "\(name) is frozen")
    }
    XCTAssertNotEqual(try after.floats("7.weight"), try before.floats("7.weight"))
    XCTAssertEqual(after.metadata["frozen"], "conv1,conv2")
    XCTAssertEqual(after.metadata["source_model"], pre)
    let all = try runPTrain([
      "finetune", "--from", pre, "--train-limit", "320", "--epochs", "1", "--quiet", "--save", tuned,
    ])
    XCTAssertEqual(all.status, 0, all.stderr)
    XCTAssertNotEqual(try SafeTensors.read(path: tuned).floats("0.weight"), try before.floats("0.weight"))
  }

  /// Ctrl-C finishes the step, writes the checkpoint, says where, and exits 130; the
  /// checkpoint resumes to the bits of an uninterrupted run.
  func testInterruptSavesAResumableCheckpoint() throws {
    let directory = try makeTemporaryDirectory()
    let path = directory.appendingPathComponent("run.safetensors").path
    let arguments = ["--train-limit", "6400", "--epochs", "2", "--threads", "2"]
    let interrupted = try runPTrain(arguments + ["--save", path], signals: [(SIGINT, "epoch 1 ")])
    XCTAssertEqual(interrupted.status, 130, interrupted.stderr)
    XCTAssertTrue(interrupted.stderr.contains("stopping after this step"), interrupted.stderr)
    XCTAssertTrue(interrupted.stderr.contains("checkpoint saved to \(path)"), interrupted.stderr)
    XCTAssertEqual(interrupted.stdout, "")
    let state = try Checkpoint(path: path).trainingState()
    XCTAssertEqual(state.epochsCompleted * 200 + state.stepsIntoEpoch, state.optimizerStep)
    XCTAssertGreaterThanOrEqual(state.optimizerStep, 200)
    // The printed hint is a complete command: run exactly it (through a shell). It names
    // the binary as it was run, repeats --threads, and saves back to the same file.
    let hint = try XCTUnwrap(
      interrupted.stderr.components(separatedBy: "continue with: ").last?.split(separator: "\n").first)
    XCTAssertEqual(String(hint), "\(ptrainBinary.path) train --resume \(path) --threads 2")
    let resumed = try runPTrainInShell(String(hint) + " --quiet --json")
    XCTAssertEqual(resumed.status, 0, resumed.stderr)
    let straight = try runPTrain(arguments + ["--quiet", "--json"])
    XCTAssertEqual(
      try resumed.json()["parameters_sha256"] as? String, try straight.json()["parameters_sha256"] as? String)
    XCTAssertEqual(try resumed.json()["checkpoint"] as? String, path, "the resumed run saved back to its file")
    let finished = try Checkpoint(path: path)
    XCTAssertEqual(finished.metadata["epochs_completed"], "2")
    XCTAssertEqual(
      try XCTUnwrap(finished.parameters).withUnsafeBytes { SHA256.hex($0) },
      try straight.json()["parameters_sha256"] as? String)

    let terminated = try runPTrain(arguments, signals: [(SIGTERM, "epoch 1 ")])
    XCTAssertEqual(terminated.status, 143, terminated.stderr)
    XCTAssertTrue(terminated.stderr.contains("nothing saved (no --save)"), terminated.stderr)
  }

  /// A second Ctrl-C during a long step exits at once, without a checkpoint.
  func testSecondInterruptExitsAtOnce() throws {
    let directory = try makeTemporaryDirectory()
    let path = directory.appendingPathComponent("never.safetensors").path
    // One step of 6,400 images takes about 0.3 s, far longer than a signal's round trip.
    let result = try runPTrain(
      ["--train-limit", "6400", "--batch-size", "6400", "--epochs", "50", "--save", path],
      signals: [(SIGINT, "epoch 1 "), (SIGINT, "stopping after this step")])
    XCTAssertEqual(result.status, 130, result.stderr)
    XCTAssertTrue(result.stderr.contains("second interrupt, exiting now"), result.stderr)
    XCTAssertFalse(FileManager.default.fileExists(atPath: path))
  }

  /// A non-finite loss stops the run with the step and layer named; the last checkpoint
  /// stays as it was and nothing later is written.
  func testNaNGuardKeepsTheLastGoodCheckpoint() throws {
    let directory = try makeTemporaryDirectory()
    let path = directory.appendingPathComponent("good.safetensors").path
    XCTAssertEqual(try runPTrain(small + ["--epochs", "1", "--save", path]).status, 0)
    let tuned = directory.appendingPathComponent("tuned.safetensors").path
    try FileManager.default.copyItem(atPath: path, toPath: tuned)
    let good = try Data(contentsOf: URL(fileURLWithPath: tuned))
    let blown = try runPTrain(
      ["finetune", "--from", path, "--learning-rate", "1e30", "--save", tuned, "--checkpoint-every", "1", "--quiet"])
    XCTAssertEqual(blown.status, 1)
    XCTAssertTrue(blown.stderr.hasPrefix("ptrain: error: non-finite "), blown.stderr)
    XCTAssertTrue(blown.stderr.contains("layer "), blown.stderr)
    XCTAssertTrue(blown.stderr.contains("step 2"), blown.stderr)
    XCTAssertTrue(blown.stderr.contains("the last checkpoint, \(tuned) at step 1, is untouched"), blown.stderr)
    XCTAssertEqual(blown.stderr.split(separator: "\n").count, 1)
    let kept = try Checkpoint(path: tuned)
    XCTAssertTrue(kept.parameters.allSatisfy(\.isFinite))
    XCTAssertNotEqual(try Data(contentsOf: URL(fileURLWithPath: tuned)), good, "step 1 was saved over the older file")
    XCTAssertEqual(kept.metadata["optimizer_step"], "1")
  }

  /// Every subcommand documents its flags, in clean prose.
  func testHelpDocumentsTheNewFlags() throws {
    let expected = [
      "train": ["--save", "--checkpoint-every", "--resume"], "evaluate": ["CHECKPOINT", "--json"],
      "finetune": ["--from", "--freeze", "--new-head", "--classes", "--train-limit"],
    ]
    for (command, flags) in expected {
      let help = try runPTrain(["help", command])
      XCTAssertEqual(help.status, 0, help.stderr)
      for flag in flags { XCTAssertTrue(help.stdout.contains(flag), "\(command) --help lacks \(flag)") }
      XCTAssertFalse(help.stdout.contains("\\"), "a stray backslash in \(command)'s help: \(help.stdout)")
    }
  }

  /// Every bad checkpoint input ends in one line on stderr and a non-zero exit.
  func testBadCheckpointInputGivesOneLineErrors() throws {
    let directory = try makeTemporaryDirectory()
    let good = directory.appendingPathComponent("good.safetensors").path
    XCTAssertEqual(try runPTrain(small + ["--epochs", "1", "--save", good]).status, 0)
    let bytes = try Data(contentsOf: URL(fileURLWithPath: good))
    func file(_ name: String, _ contents: Data) throws -> String {
      let url = directory.appendingPathComponent(name)
      try contents.write(to: url)
      return url.path
    }
    let text = try file("text.safetensors", Data("hello, this is not a checkpoint".utf8))
    let truncated = try file("truncated.safetensors", bytes.prefix(bytes.count / 2))
    var badJSON = bytes
    badJSON[9] = UInt8(ascii: "!")
    let brokenJSON = try file("json.safetensors", badJSON)
    let twelveClasses = directory.appendingPathComponent("twelve.safetensors").path
    XCTAssertEqual(
      try runPTrain([
        "finetune", "--from", good, "--new-head", "--classes", "12", "--train-limit", "64", "--epochs", "1",
        "--quiet", "--save", twelveClasses,
      ]).status, 0)
    let cases: [([String], String)] = [
      (["evaluate", directory.appendingPathComponent("missing").path], "No such file or directory"),
      (["evaluate", text], "header length"),
      (["evaluate", truncated], "not a valid safetensors file"),
      (["evaluate", brokenJSON], "bad JSON"),
      (["evaluate", directory.path], "not a regular file"),
      (
        ["finetune", "--from", good, "--classes", "5"],
        "has a 10-class head but the model asks for 5 classes; add --new-head"
      ),
      (
        ["finetune", "--from", twelveClasses, "--classes", "10"],
        "has a 12-class head but the model asks for 10 classes"
      ),
      (["finetune", "--from", good, "--new-head", "--classes", "5"], "mnist has label 9 but the model has 5 classes"),
      (["finetune", "--from", good, "--freeze", "conv9"], "no layer with parameters called \"conv9\""),
      (["finetune", "--from", good, "--freeze", "conv1,conv2,dense"], "leave at least one to train"),
      (["finetune", "--from", good, "--new-head", "--freeze", "7"], "random initial weights"),
      (["train", "--resume", good, "--batch-size", "64", "--epochs", "2"], "--batch-size 64 differs from"),
      (["train", "--resume", good, "--epochs", "2", "--train-limit", "320"], "resume on the same data"),
      (["train", "--checkpoint-every", "10"], "--checkpoint-every needs --save"),
      (["train", "--save", directory.path], "is a directory"),
    ]
    for (arguments, fragment) in cases {
      let needsEpochs = arguments[0] != "evaluate" && !arguments.contains("--epochs")
      let result = try runPTrain(arguments + (needsEpochs ? ["--epochs", "1"] : []))
      XCTAssertNotEqual(result.status, 0, "\(arguments)")
      XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, "\(arguments): \(result.stderr)")
      XCTAssertTrue(result.stderr.hasPrefix("ptrain: error: "), "\(arguments): \(result.stderr)")
      XCTAssertTrue(result.stderr.contains(fragment), "\(arguments): '\(result.stderr)' lacks '\(fragment)'")
    }
  }
}
