import Foundation
import PTrain
import Synchronization
import XCTest

/// safetensors bytes with `header` verbatim and `dataBytes` zero bytes of data.
func safetensorsBytes(header: String, dataBytes: Int = 0, declaredLength: UInt64? = nil) -> [UInt8] {
  let json = Array(header.utf8)
  let length = declaredLength ?? UInt64(json.count)
  return (0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * $0)) } + json + [UInt8](repeating: 0, count: dataBytes)
}

final class CheckpointTests: XCTestCase {
  static let mnist = try! Dataset.bundledMNIST()

  func testSafeTensorsRoundTrip() throws {
    let bytes = SafeTensors.encode(
      tensors: [("a", [2, 3], [1, 2, 3, 4, 5, -6.5]), ("b.c", [0], []), ("d", [], [.pi])],
      metadata: ["note": "quote \" and \\ and\nnewline", "k": "v"])
    let headerLength = bytes[0..<8].reversed().reduce(0) { $0 << 8 | Int($1) }
    XCTAssertEqual((8 + headerLength) % 8, 0, "data starts 8-byte aligned")
    let file = try SafeTensors.parse(bytes, name: "memory")
    XCTAssertEqual(file.names, ["a", "b.c", "d"])
    XCTAssertEqual(try file.floats("a"), [1, 2, 3, 4, 5, -6.5])
    XCTAssertEqual(try file.floats("b.c"), [])
    XCTAssertEqual(try file.floats("d"), [.pi])
    XCTAssertEqual(file.entries["a"]?.shape, [2, 3])
    XCTAssertEqual(file.metadata, ["note": "quote \" and \\ and\nnewline", "k": "v"])
    XCTAssertNil(try file.floats("missing"))
  }

  /// Every malformed file is refused with a one-line reason, before any big allocation.
  func testMalformedSafeTensorsAreRefused() {
    let tensor = #""t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#
    let cases: [([UInt8], String)] = [
      ([1, 2, 3], "too short for the 8-byte header length"),
      (safetensorsBytes(header: "{}", declaredLength: 1 << 40), "over the 16777216-byte limit"),
      (safetensorsBytes(header: "{}", declaredLength: 100), "runs past the end"),
      (safetensorsBytes(header: "[1]"), "does not start with a JSON object"),
      (safetensorsBytes(header: "{\"t\":"), "bad JSON"),
      (safetensorsBytes(header: "{\(tensor)}", dataBytes: 4), "outside the 4 data bytes"),
      (
        safetensorsBytes(
          header: "{\(tensor),\"u\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", dataBytes: 8), "overlap"
      ),
      (
        safetensorsBytes(header: "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", dataBytes: 8),
        "hole"
      ),
      (safetensorsBytes(header: "{\(tensor)}", dataBytes: 12), "the tensors cover 8 data bytes but the file holds 12"),
      (
        safetensorsBytes(header: "{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", dataBytes: 8),
        "do not hold"
      ),
      (
        safetensorsBytes(header: "{\"t\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", dataBytes: 8),
        "unknown dtype"
      ),
      (
        safetensorsBytes(header: "{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", dataBytes: 8),
        "non-negative integer"
      ),
      (
        safetensorsBytes(
          header: "{\"t\":{\"dtype\":\"F32\",\"shape\":[99999999999,99999999999],\"data_offsets\":[0,8]}}", dataBytes: 8
        ), "more elements than the file has bytes"
      ),
      (safetensorsBytes(header: "{\(tensor),\(tensor)}", dataBytes: 8), "bad JSON at byte 54: duplicate key \"t\""),
      (
        safetensorsBytes(
          header: #"{"t":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}}"#, dataBytes: 8),
        "bad JSON at byte 20: duplicate key \"dtype\""
      ),
      (safetensorsBytes(header: "{\"__metadata__\":{\"a\":1}}"), "not a string"),
      (safetensorsBytes(header: String(repeating: "[", count: 100) + String(repeating: "]", count: 100)), "JSON"),
      (
        safetensorsBytes(
          header: "{\"a\":" + String(repeating: "[", count: 100) + String(repeating: "]", count: 100) + "}"),
        "nested deeper"
      ),
    ]
    for (bytes, fragment) in cases {
      XCTAssertThrowsError(try SafeTensors.parse(bytes, name: "f.safetensors"), fragment) { error in
        let text = "\(error)"
        XCTAssertTrue(text.hasPrefix("f.safetensors: not a valid safetensors file: "), text)
        XCTAssertTrue(text.contains(fragment), "'\(text)' lacks '\(fragment)'")
        XCTAssertFalse(text.contains("\n"))
      }
    }
  }

  func testJSONParserAcceptsValidAndRefusesInvalidText() throws {
    let parse = { (text: String) in try JSONParser.parse(Array(text.utf8)) }
    XCTAssertEqual(
      try parse(#" {"a" : [1, -2.5e3, true, false, null], "b": "x\u00e9\ud83d\ude00\n"} "#),
      .object([
        ("a", .array([.number("1"), .number("-2.5e3"), .bool(true), .bool(false), .null])), ("b", .string("xé😀\n")),
      ]))
    XCTAssertEqual(try parse("18446744073709551616").nonNegativeInt, nil, "too big for Int")
    XCTAssertEqual(try parse("42").nonNegativeInt, 42)
    for bad in [
      "", "{", "[1,]", "{\"a\"}", "01", "1.", "-", "\"\\x\"", "\"\\ud800\"", "\"a", "tru", "[1] 2", "\"\u{01}\"",
      "{\"a\":1,}",
    ] {
      XCTAssertThrowsError(try parse(bad), bad) { XCTAssertTrue("\($0)".hasPrefix("bad JSON at byte"), "\($0)") }
    }
  }

  /// The PyTorch-layout tensors, run through PyTorch's semantics (NCHW, OIHW, C,H,W
  /// flatten), give the logits ptrain computes.
  func testTorchLayoutMeansTheSameModelToPyTorch() throws {
    let plan = try ModelPlan(.mnistCNN)
    var generator = SeededGenerator(seed: 9)
    var values = plan.initialParameters(using: &generator)
    for i in values.indices { values[i] += generator.nextUnitFloat() * 0.02 - 0.01 }  // non-zero biases
    let state = values.withUnsafeBufferPointer {
      Dictionary(uniqueKeysWithValues: plan.torchTensors($0.baseAddress!).map { ($0.name, $0.values) })
    }
    XCTAssertEqual(Set(state.keys), ["0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias"])
    let replica = Replica(plan: plan)
    for index in [0, 7] {
      let image = Array(try Self.mnist.test.pixels[(index * 784)..<((index + 1) * 784)])
      let logits = values.withUnsafeBufferPointer { p in
        replica.prepare(parameters: p.baseAddress!)
        return image.withUnsafeBufferPointer {
          Array(replica.forward(image: $0.baseAddress!, parameters: p.baseAddress!))
        }
      }
      let standardised = image.map { (Float($0) / 255 - 0.1307) / 0.3081 }
      assertClose(logits, TorchReference.forward(standardised, state: state), tolerance: 1e-4, "image \(index)")
    }
    // And reading the tensors back restores ptrain's layout exactly.
    let bytes = values.withUnsafeBufferPointer {
      SafeTensors.encode(tensors: plan.torchTensors($0.baseAddress!), metadata: [:])
    }
    var restored = [Float](repeating: 0, count: plan.parameterCount)
    try restored.withUnsafeMutableBufferPointer {
      try plan.readTorchTensors(from: SafeTensors.parse(bytes, name: "m"), into: $0.baseAddress!, path: "m")
    }
    XCTAssertEqual(restored, values)
  }

  /// Stopping mid-epoch, saving, loading and resuming on another thread count gives the
  /// bits of an uninterrupted run; so does resuming at an epoch boundary.
  func testResumeIsBitIdentical() throws {
    let data = Self.mnist.train.prefix(608)  // 19 steps of 32
    let options = TrainingOptions(threads: 2, epochs: 2, seed: 5)
    let straight = try Trainer(options: options, normalization: .mnist)
    try straight.train(data)
    let directory = try makeTemporaryDirectory()
    for (stopAtStep, threads) in [(7, 1), (19, 3), (26, 2)] {
      let first = try Trainer(options: options, normalization: .mnist)
      let stopped = try first.train(data) { event in
        if case .step = event, first.optimizer.step == stopAtStep { first.requestStop() }
      }
      XCTAssertTrue(stopped.stopped)
      XCTAssertEqual(first.optimizer.step, stopAtStep)
      let path = directory.appendingPathComponent("stop\(stopAtStep).safetensors").path
      try Checkpoint.save(first.state(), to: path)
      let state = try Checkpoint(path: path).trainingState()
      XCTAssertEqual(state.epochsCompleted * 19 + state.stepsIntoEpoch, stopAtStep)
      let resumed = try Trainer(resuming: state, threads: threads)
      let summary = try resumed.train(data)
      XCTAssertFalse(summary.stopped)
      XCTAssertEqual(resumed.parametersSHA256, straight.parametersSHA256, "stopped at \(stopAtStep)")
      XCTAssertEqual(resumed.optimizer.state.map(\.array), straight.optimizer.state.map(\.array))
      XCTAssertEqual(resumed.optimizer.step, 38)
    }
  }

  /// A state saved from the event of an epoch's last step (as `--checkpoint-every` does
  /// when the step count falls there) has every step of the epoch done but the epoch not
  /// yet counted; it resumes to the uninterrupted bits.
  func testStateSavedAtAnEpochsLastStepResumes() throws {
    let data = Self.mnist.train.prefix(320)  // 10 steps of 32
    let options = TrainingOptions(threads: 2, epochs: 2, seed: 6)
    let straight = try Trainer(options: options, normalization: .mnist)
    try straight.train(data)
    let first = try Trainer(options: options, normalization: .mnist)
    let saved = Mutex<TrainingState?>(nil)
    try first.train(data) { event in
      if case .step(let progress) = event, progress.step == 10, progress.epoch == 1 {
        saved.withLock { $0 = first.state() }
      }
    }
    let state = try XCTUnwrap(saved.withLock { $0 })
    XCTAssertEqual(state.stepsIntoEpoch, 10)
    XCTAssertEqual(state.epochsCompleted, 0)
    let path = try makeTemporaryDirectory().appendingPathComponent("last-step.safetensors").path
    try Checkpoint.save(state, to: path)
    let loaded = try Checkpoint(path: path).trainingState()
    XCTAssertNoThrow(try loaded.validatePosition(trainingImages: 320))
    let resumed = try Trainer(resuming: loaded, threads: 1)
    try resumed.train(data)
    XCTAssertEqual(resumed.parametersSHA256, straight.parametersSHA256)
  }

  func testResumingMidEpochOnOtherDataIsRefused() throws {
    let trainer = try Trainer(options: TrainingOptions(threads: 1, epochs: 1), normalization: .mnist)
    try trainer.train(Self.mnist.train.prefix(96)) { event in
      if case .step = event { trainer.requestStop() }
    }
    let resumed = try Trainer(resuming: trainer.state(), threads: 1)
    XCTAssertThrowsError(try resumed.train(Self.mnist.train.prefix(128))) {
      XCTAssertTrue("\($0)".contains("cannot continue mid-epoch on different data"), "\($0)")
    }
  }

  /// Frozen layers keep their bits; the others train.
  func testFrozenLayersDoNotChange() throws {
    let plan = try ModelPlan(.mnistCNN)
    for frozen: Set<Int> in [[0], [0, 3], [3, 7], [7]] {
      let trainer = try Trainer(options: TrainingOptions(threads: 2, epochs: 1, frozen: frozen), normalization: .mnist)
      let before = trainer.parameterValues
      try trainer.train(Self.mnist.train.prefix(128))
      let after = trainer.parameterValues
      for layer in plan.parameterLayers {
        let range = layer.parameterRange
        if frozen.contains(layer.index) {
          XCTAssertEqual(Array(after[range]), Array(before[range]), "\(layer.name) frozen in \(frozen)")
        } else {
          XCTAssertNotEqual(Array(after[range]), Array(before[range]), "\(layer.name) trains in \(frozen)")
        }
      }
    }
    XCTAssertThrowsError(try Trainer(options: TrainingOptions(threads: 1, frozen: [0, 3, 7]), normalization: .mnist))
    XCTAssertThrowsError(try Trainer(options: TrainingOptions(threads: 1, frozen: [1]), normalization: .mnist)) {
      XCTAssertEqual("\($0)", "layer 1 cannot be frozen: it has no parameters")
    }
    XCTAssertEqual(try plan.parameterLayer(named: "3"), 3)
    XCTAssertEqual(try plan.parameterLayer(named: "dense"), 7)
    XCTAssertThrowsError(try plan.parameterLayer(named: "conv3")) {
      XCTAssertEqual(
        "\($0)", "there is no layer with parameters called \"conv3\"; they are conv1 (0), conv2 (3), dense (7)")
    }
  }

  /// The gradient of a frozen-below layer matches the full backward pass exactly where
  /// both compute it.
  func testFrozenBackwardComputesTheSameGradientsForTrainableLayers() throws {
    let plan = try ModelPlan(.mnistCNN)
    var generator = SeededGenerator(seed: 2)
    let values = plan.initialParameters(using: &generator)
    let image = Array(try Self.mnist.train.pixels[0..<784])
    func gradient(frozen: Set<Int>) -> [Float] {
      let replica = Replica(plan: plan, frozen: frozen)
      var g = [Float](repeating: 0, count: plan.parameterCount)
      values.withUnsafeBufferPointer { p in
        replica.prepare(parameters: p.baseAddress!)
        image.withUnsafeBufferPointer { image in
          g.withUnsafeMutableBufferPointer { g in
            _ = replica.addGradient(
              image: image.baseAddress!, label: 5, parameters: p.baseAddress!, into: g.baseAddress!)
          }
        }
      }
      return g
    }
    let full = gradient(frozen: [])
    for frozen: Set<Int> in [[0], [0, 3], [7]] {
      let partial = gradient(frozen: frozen)
      for layer in plan.parameterLayers {
        let range = layer.parameterRange
        XCTAssertEqual(
          Array(partial[range]),
          frozen.contains(layer.index) ? [Float](repeating: 0, count: range.count) : Array(full[range]),
          "\(layer.name) with \(frozen) frozen")
      }
    }
  }

  /// A huge learning rate overflows Float; training stops with an error naming the step and
  /// the layer, and the parameters stay those of the last good step.
  func testNonFiniteValuesStopTrainingBeforeTheyAreApplied() throws {
    let trainer = try Trainer(
      options: TrainingOptions(threads: 2, epochs: 3, learningRate: 1e30), normalization: .mnist)
    let lastGood = Mutex<[Float]>([])
    XCTAssertThrowsError(
      try trainer.train(Self.mnist.train.prefix(320)) { event in
        if case .step = event { lastGood.withLock { $0 = trainer.parameterValues } }
      }
    ) { error in
      let text = "\(error)"
      XCTAssertTrue(text.hasPrefix("non-finite "), text)
      XCTAssertTrue(text.contains("step"), text)
      XCTAssertTrue(text.contains("layer") || text.contains("loss"), text)
    }
    XCTAssertEqual(trainer.parameterValues, lastGood.withLock { $0 })
    XCTAssertTrue(trainer.parameterValues.allSatisfy(\.isFinite))
    let directory = try makeTemporaryDirectory()
    var poisoned = trainer.state()
    poisoned.parameters[3] = .nan
    XCTAssertThrowsError(try Checkpoint.save(poisoned, to: directory.appendingPathComponent("x").path)) {
      XCTAssertTrue("\($0)".contains("0.weight is not finite"), "\($0)")
    }
    XCTAssertFalse(FileManager.default.fileExists(atPath: directory.appendingPathComponent("x").path))
  }

  /// A write that fails half-way (here: over the file-size limit) leaves the previous
  /// checkpoint untouched and no temporary file behind.
  func testFailedWriteKeepsThePreviousCheckpoint() throws {
    let directory = try makeTemporaryDirectory()
    let path = directory.appendingPathComponent("run.safetensors").path
    let trainer = try Trainer(options: TrainingOptions(threads: 1, epochs: 1), normalization: .mnist)
    try Checkpoint.save(trainer.state(), to: path)
    let before = try Data(contentsOf: URL(fileURLWithPath: path))
    var saved = rlimit()
    getrlimit(Int32(RLIMIT_FSIZE.rawValue), &saved)
    var small = saved
    small.rlim_cur = 4096
    let oldHandler = signal(SIGXFSZ, SIG_IGN)
    setrlimit(Int32(RLIMIT_FSIZE.rawValue), &small)
    defer {
      setrlimit(Int32(RLIMIT_FSIZE.rawValue), &saved)
      signal(SIGXFSZ, oldHandler)
    }
    try trainer.train(Self.mnist.train.prefix(32))
    XCTAssertThrowsError(try Checkpoint.save(trainer.state(), to: path)) {
      XCTAssertTrue("\($0)".contains("write failed: File too large; the previous file, if any, is untouched"), "\($0)")
    }
    XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), before)
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["run.safetensors"])
  }

  func testCheckpointErrorsNameTheProblem() throws {
    let directory = try makeTemporaryDirectory()
    let plan = try ModelPlan(.mnistCNN)
    let values = [Float](repeating: 0.5, count: plan.parameterCount)
    let weightsOnly = directory.appendingPathComponent("weights.safetensors").path
    try writeFileAtomically(
      values.withUnsafeBufferPointer { SafeTensors.encode(tensors: plan.torchTensors($0.baseAddress!), metadata: [:]) },
      to: weightsOnly)
    XCTAssertThrowsError(try Checkpoint(path: weightsOnly)) {
      XCTAssertTrue("\($0)".contains("does not say how its images were standardised"), "\($0)")
    }
    let checkpoint = try Checkpoint(path: weightsOnly, normalization: .mnist)
    XCTAssertEqual(checkpoint.parameters, values)
    XCTAssertEqual(checkpoint.normalization, .mnist)
    XCTAssertThrowsError(try checkpoint.trainingState()) { XCTAssertTrue("\($0)".contains("holds weights only")) }
    let mislabeled = directory.appendingPathComponent("mislabeled.safetensors").path
    try writeFileAtomically(
      values.withUnsafeBufferPointer {
        SafeTensors.encode(tensors: plan.torchTensors($0.baseAddress!), metadata: ["classes": "5"])
      }, to: mislabeled)
    XCTAssertThrowsError(try Checkpoint(path: mislabeled, normalization: .mnist)) {
      XCTAssertTrue("\($0)".contains("says 5 classes but the model has 10"), "\($0)")
    }
    XCTAssertThrowsError(try Checkpoint(path: directory.appendingPathComponent("none").path)) {
      XCTAssertTrue("\($0)".contains("No such file"), "\($0)")
    }
    XCTAssertThrowsError(try Checkpoint(path: directory.path)) {
      XCTAssertTrue("\($0)".contains("not a regular file"), "\($0)")
    }
  }
}
