import Foundation
import PTrain
import XCTest

/// The optimizer, schedule and label-smoothing flags: what a run says it used, what its
/// checkpoint keeps, what a resume refuses to change, and a one-line refusal for each bad value.
final class HyperParameterOptionsTests: XCTestCase {
  static let tiny = ["train", "--train-limit", "256", "--threads", "2"]

  func testRecipeFlagsReachTheRunItsSummaryAndItsCheckpoint() throws {
    let directory = try makeTemporaryDirectory()
    let saved = directory.appendingPathComponent("sgd.safetensors").path
    let report = directory.appendingPathComponent("report.html").path
    let recipe = [
      "--optimizer", "sgd", "--momentum", "0.9", "--nesterov", "--weight-decay", "5e-4", "--no-decay-bn-bias",
      "--learning-rate", "0.05", "--lr-schedule", "cosine", "--warmup-steps", "3", "--label-smoothing", "0.1",
    ]
    let result = try runPTrain(
      Self.tiny + recipe + ["--epochs", "2", "--json", "--quiet", "--save", saved, "--report", report])
    XCTAssertEqual(result.status, 0, result.stderr)
    let json = try result.json()
    XCTAssertEqual(json["optimizer"] as? String, "sgd momentum=0.9 nesterov weight_decay=0.0005 no_decay_bn_bias")
    XCTAssertEqual(json["lr_schedule"] as? String, "cosine")
    XCTAssertEqual(json["warmup_steps"] as? Int, 3)
    XCTAssertEqual(json["label_smoothing"] as? Double ?? 0, 0.1, accuracy: 1e-6)
    let history = try XCTUnwrap(json["history"] as? [[String: Any]])
    let rates = history.compactMap { $0["learning_rate"] as? Double }
    XCTAssertEqual(rates.count, 2)
    // 8 steps per epoch: epoch 1 ends at step 7 of cosine's 13 after the warm-up.
    XCTAssertEqual(rates[0], 0.05 * (1 + cos(Double.pi * 4 / 13)) / 2, accuracy: 1e-7)
    let checkpoint = try Checkpoint(path: saved)
    XCTAssertEqual(checkpoint.metadata["optimizer_settings"], json["optimizer"] as? String)
    XCTAssertEqual(checkpoint.metadata["lr_schedule"], "cosine")
    XCTAssertEqual(checkpoint.metadata["optimizer"], "sgd (torch rule, momentum 0.9, nesterov, no dampening)")
    XCTAssertTrue(try String(contentsOfFile: report, encoding: .utf8).contains("learning rate (epoch"))

    assertRefused(
      try runPTrain(["train", "--resume", saved, "--epochs", "3", "--optimizer", "adamw"]), status: 64,
      "--optimizer adamw differs from \(saved)'s sgd")
    assertRefused(
      try runPTrain(["train", "--resume", saved, "--epochs", "3", "--lr-schedule", "step:1"]), status: 64,
      "--lr-schedule step:1 differs")
    let resumed = try runPTrain([
      "train", "--resume", saved, "--epochs", "3", "--optimizer", "sgd", "--momentum", "0.9", "--nesterov",
      "--json", "--quiet", "--threads", "1",
    ])
    XCTAssertEqual(resumed.status, 0, resumed.stderr)
    XCTAssertTrue(resumed.stderr.contains("changes the length the cosine schedule was planned over"), resumed.stderr)
  }

  func testBadRecipeFlagsAreRefusedInOneLine() throws {
    for (flags, fragment) in [
      (["--optimizer", "lion"], "--optimizer lion is not one ptrain has; use adam, adamw, sgd"),
      (["--momentum", "0.9"], "--momentum is SGD's"),
      (["--optimizer", "sgd", "--momentum", "1"], "--momentum must be at least 0 and below 1"),
      (["--optimizer", "sgd", "--nesterov"], "--nesterov needs --optimizer sgd with a --momentum above 0"),
      (["--weight-decay", "nan"], "--weight-decay must be a finite number"),
      (["--lr-schedule", "linear"], "unknown learning-rate schedule 'linear'"),
      (["--lr-schedule", "step:5,2"], "step needs increasing epochs"),
      (["--warmup-steps", "-1"], "--warmup-steps must be at least 0"),
      (["--label-smoothing", "1"], "--label-smoothing must be at least 0 and below 1"),
    ] {
      assertRefused(try runPTrain(Self.tiny + flags), status: 64, fragment)
    }
  }
}
