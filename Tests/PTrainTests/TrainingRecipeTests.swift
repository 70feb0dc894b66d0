import Foundation
import PTrain
import Synchronization
import XCTest

/// Every optimizer and schedule trains to the same bits at any thread count, and a run
/// stopped, saved and resumed (on another thread count) ends with the bits of one that never
/// stopped: the optimizer's state, its settings and the schedule travel in the checkpoint.
final class TrainingRecipeTests: XCTestCase {
  static let mnist = try! Dataset.bundledMNIST()

  static let recipes: [(OptimizerSettings, String, Int, Float)] = [
    (
      OptimizerSettings(.sgd, momentum: 0.9, nesterov: true, weightDecay: 5e-4, decaysNormsAndBiases: false), "cosine",
      3, 0.1
    ),
    (OptimizerSettings(.sgd), "step:1:0.5", 0, 0),
    (OptimizerSettings(.adamw), "onecycle", 0, 0),
    (OptimizerSettings(.adam, weightDecay: 1e-4), "constant", 2, 0.05),
  ]

  func testEveryRecipeResumesBitForBitAtAnyThreadCount() throws {
    let data = Self.mnist.train.prefix(320)  // 10 steps of 32
    let model = try ModelDefinition(
      parsing: "input 28x28x1, conv 16 3x3, batchnorm, relu, maxpool 2, flatten, dense 10")
    let directory = try makeTemporaryDirectory()
    for (index, (optimizer, scheduleText, warmup, smoothing)) in Self.recipes.enumerated() {
      let schedule = try LearningRateSchedule(parsing: scheduleText, warmupSteps: warmup)
      let options = TrainingOptions(
        threads: 2, epochs: 2, learningRate: optimizer.algorithm == .sgd ? 0.05 : 2e-3, seed: 3,
        optimizer: optimizer, schedule: schedule, labelSmoothing: smoothing)
      let straight = try Trainer(options: options, model: model, normalization: .mnist)
      let summary = try straight.train(data)
      let name = "\(optimizer) \(schedule)"
      XCTAssertLessThan(summary.epochs[1].trainLoss, summary.epochs[0].trainLoss, name)
      var single = options
      single.threads = 1
      let one = try Trainer(options: single, model: model, normalization: .mnist)
      try one.train(data)
      XCTAssertEqual(one.parametersSHA256, straight.parametersSHA256, "1 thread, \(name)")

      let first = try Trainer(options: options, model: model, normalization: .mnist)
      try first.train(data) { event in
        if case .step = event, first.optimizer.step == 7 { first.requestStop() }
      }
      let path = directory.appendingPathComponent("recipe\(index).safetensors").path
      try Checkpoint.save(first.state(), to: path)
      let state = try Checkpoint(path: path).trainingState()
      XCTAssertEqual(state.options.optimizer, optimizer, name)
      XCTAssertEqual(state.options.schedule, schedule, name)
      XCTAssertEqual(state.options.labelSmoothing, smoothing, name)
      var mismatched = state
      mismatched.options.optimizer = OptimizerSettings(.sgd)  // no state buffers where the file has some
      if optimizer != mismatched.options.optimizer {
        XCTAssertThrowsError(try Trainer(resuming: mismatched, threads: 1)) {
          XCTAssertTrue("\($0)".contains("does not fit its model and optimizer"), "\($0)")
        }
      }
      let resumed = try Trainer(resuming: state, threads: 3)
      try resumed.train(data)
      XCTAssertEqual(resumed.parametersSHA256, straight.parametersSHA256, "resumed, \(name)")
      XCTAssertEqual(resumed.optimizer.state.map(\.array), straight.optimizer.state.map(\.array), name)
    }
  }

  /// The rate each step used is the schedule's, as the step events and epoch reports say.
  func testEventsReportTheScheduledRate() throws {
    let data = Self.mnist.train.prefix(96)  // 3 steps of 32
    let schedule = try LearningRateSchedule(parsing: "cosine", warmupSteps: 1)
    let options = TrainingOptions(threads: 1, epochs: 2, learningRate: 0.01, schedule: schedule)
    let trainer = try Trainer(options: options, normalization: .mnist)
    let seen = Mutex<[Float]>([])
    let summary = try trainer.train(data) { event in
      if case .step(let progress) = event { seen.withLock { $0.append(progress.learningRate) } }
    }
    let expected = (0..<6).map { options.learningRate(atStep: $0, stepsPerEpoch: 3) }
    XCTAssertEqual(seen.withLock { $0 }, expected)
    XCTAssertEqual(expected[0], 0.01)
    XCTAssertEqual(summary.epochs.map(\.learningRate), [expected[2], expected[5]])
  }

  /// A checkpoint from before the optimizer was a choice (no settings, `adam_step`) resumes
  /// as Adam at a constant rate; settings that cannot be read are refused in one line.
  func testOlderCheckpointsResumeAsAdamAndBadSettingsAreRefused() throws {
    let data = Self.mnist.train.prefix(64)
    let trainer = try Trainer(
      options: TrainingOptions(threads: 1, epochs: 1, learningRate: 0.002), normalization: .mnist)
    try trainer.train(data)
    let directory = try makeTemporaryDirectory()
    let saved = directory.appendingPathComponent("new.safetensors").path
    try Checkpoint.save(trainer.state(), to: saved)
    let file = try SafeTensors.read(path: saved)
    let tensors = try file.names.map { ($0, file.entries[$0]!.shape, try file.floats($0)!) }
    func write(_ name: String, _ change: (inout [String: String]) -> Void) throws -> String {
      var metadata = file.metadata
      change(&metadata)
      let path = directory.appendingPathComponent(name).path
      try writeFileAtomically(SafeTensors.encode(tensors: tensors, metadata: metadata), to: path)
      return path
    }
    let old = try write("old.safetensors") { metadata in
      for key in ["optimizer_settings", "lr_schedule", "warmup_steps", "label_smoothing", "optimizer_step"] {
        metadata[key] = nil
      }
      metadata["adam_step"] = "2"
      metadata["optimizer"] = "adam (keras rule, beta1 0.9, beta2 0.999, eps 1e-7)"
    }
    let state = try Checkpoint(path: old).trainingState()
    XCTAssertEqual(state.options.optimizer, .adam)
    XCTAssertEqual(state.options.schedule, .constant)
    XCTAssertEqual(state.optimizerStep, 2)
    XCTAssertEqual(state.options.learningRate, 0.002)
    for (change, message) in [
      (["optimizer_settings": "lion"], "__metadata__: unknown optimizer 'lion'"),
      (["optimizer_settings": "sgd momentum=2"], "momentum must be"),
      (["lr_schedule": "linear"], "unknown learning-rate schedule 'linear'"),
      (["warmup_steps": "-1"], "warmup_steps is not an integer"),
      (["label_smoothing": "1.5"], "labelSmoothing must be"),
    ] {
      let path = try write("bad.safetensors") { $0.merge(change) { _, new in new } }
      XCTAssertThrowsError(try Checkpoint(path: path).trainingState(), message) {
        XCTAssertTrue("\($0)".contains(message) && "\($0)".hasPrefix(path), "\($0)")
      }
    }
  }
}
