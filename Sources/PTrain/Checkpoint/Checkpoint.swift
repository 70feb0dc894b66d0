/// Everything a run needs to continue bit for bit: the model, the hyper-parameters, the
/// parameters, Adam's moments and step, the position in the epoch and the generator.
public struct TrainingState: Sendable {
  public var spec: ModelSpec
  /// The run's hyper-parameters; `threads` is not part of the state.
  public var options: TrainingOptions
  /// The parameters in ptrain's layout (see `ModelSpec`).
  public var parameters: [Float]
  public var firstMoment: [Float]
  public var secondMoment: [Float]
  /// Adam steps taken.
  public var adamStep: Int
  /// Whole epochs finished, and steps finished in the epoch after them.
  public var epochsCompleted: Int
  public var stepsIntoEpoch: Int
  /// The generator as it was before it shuffled epoch `epochsCompleted + 1`; replaying
  /// that shuffle recovers the epoch's order.
  public var epochGenerator: SeededGenerator
  /// Summed loss and correct count of the steps finished in the current epoch.
  public var epochLoss: Double
  public var epochCorrect: Int
  /// Identifies the training data (see `LabeledImages.fingerprint`).
  public var dataFingerprint: String
}

extension TrainingState {
  /// Throws a one-line error unless the position is one a run can reach: epochs and
  /// steps within the run, a correct count no larger than the images seen, and nothing
  /// counted at the start of an epoch. Cost: O(1).
  public func validatePosition() throws {
    guard epochsCompleted <= options.epochs, epochsCompleted < options.epochs || stepsIntoEpoch == 0 else {
      throw PTrainError(
        "the position (epoch \(epochsCompleted) done, step \(stepsIntoEpoch) of the next) lies past the run's \(options.epochs) epochs"
      )
    }
    guard stepsIntoEpoch <= adamStep else {
      throw PTrainError("steps_into_epoch \(stepsIntoEpoch) is more than the \(adamStep) Adam steps taken")
    }
    let (seen, overflow) = stepsIntoEpoch.multipliedReportingOverflow(by: options.batchSize)
    guard overflow || epochCorrect <= seen else {
      throw PTrainError("epoch_correct \(epochCorrect) is more than the \(seen) images of the epoch's steps so far")
    }
    guard stepsIntoEpoch > 0 || (epochCorrect == 0 && epochLoss == 0) else {
      throw PTrainError("the epoch's loss and correct count are not zero at its first step")
    }
  }

  /// Throws a one-line error unless the position fits an epoch of `trainingImages`
  /// images: the step lies inside the epoch (or at its end: a state saved from the last
  /// step's event, before the epoch is counted as finished), and Adam's step count is
  /// the steps of the finished epochs plus this one's. Call before training on the data.
  /// Cost: O(1).
  public func validatePosition(trainingImages: Int) throws {
    try validatePosition()
    let steps = (trainingImages + options.batchSize - 1) / options.batchSize
    guard stepsIntoEpoch <= steps else {
      throw PTrainError(
        "steps_into_epoch \(stepsIntoEpoch) is past the \(steps) steps of an epoch of \(trainingImages) images")
    }
    let finished = epochsCompleted.multipliedReportingOverflow(by: steps)
    let total = finished.partialValue.addingReportingOverflow(stepsIntoEpoch)
    guard !finished.overflow, !total.overflow, total.partialValue == adamStep else {
      throw PTrainError(
        "adam_step \(adamStep) is not the \(epochsCompleted) epoch(s) of \(steps) steps plus \(stepsIntoEpoch) that the position implies"
      )
    }
    guard epochCorrect <= min(stepsIntoEpoch * options.batchSize, trainingImages) else {
      throw PTrainError("epoch_correct \(epochCorrect) is more than the images of the epoch's steps so far")
    }
  }
}

/// A `.safetensors` checkpoint.
///
/// The model's tensors use PyTorch's names and layouts (see `ModelSpec.torchTensors`),
/// so `model.load_state_dict` accepts them. Adam's moments ride along as
/// `optimizer.exp_avg.<name>` and `optimizer.exp_avg_sq.<name>` in the same layouts, and
/// the rest of the training state and the hyper-parameters go into `__metadata__`.
/// A file with the model's tensors only (written by PyTorch, say) can be evaluated and
/// fine-tuned from, but not resumed.
public struct Checkpoint: Sendable {
  /// The value of `__metadata__.format` in every checkpoint ptrain writes.
  public static let format = "ptrain.checkpoint.v1"
  /// The most classes a checkpoint's head may have.
  public static let maximumClasses = 4096

  public let path: String
  public let spec: ModelSpec
  /// The model's parameters in ptrain's layout.
  public let parameters: [Float]
  public let metadata: [String: String]
  private let file: SafeTensors

  /// Reads and validates the checkpoint at `path`. Every problem becomes a one-line
  /// error naming the file. Cost: one read of the file plus O(parameters).
  public init(path: String) throws {
    try self.init(file: SafeTensors.read(path: path), path: path)
  }

  /// Validates checkpoint `bytes` already in memory; `name` starts every error.
  /// Cost: O(bytes).
  public init(bytes: [UInt8], name: String) throws {
    try self.init(file: SafeTensors.parse(bytes, name: name), path: name)
  }

  /// The `__metadata__` entries ptrain reads, and may print in messages.
  static let textFields = [
    "format", "model", "classes", "frozen", "dataset", "data_directory", "data", "train_images", "source_model",
    "new_head", "epochs", "batch_size", "learning_rate", "seed", "shard_size", "adam_step", "epochs_completed",
    "steps_into_epoch", "rng_state", "epoch_loss_sum", "epoch_correct", "test_accuracy", "test_loss",
  ]

  private init(file: SafeTensors, path: String) throws {
    self.path = path
    self.file = file
    metadata = file.metadata
    for key in Self.textFields {
      // A newline or escape in a value would let the file forge lines of ptrain's output.
      if let value = metadata[key], value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
      {
        throw PTrainError("\(path): __metadata__.\(key) holds a control character")
      }
    }
    guard let head = file.entries["7.bias"] else {
      throw PTrainError("\(path): has no tensor 7.bias; is it a checkpoint of the MNIST CNN?")
    }
    guard head.shape.count == 1, (2...Self.maximumClasses).contains(head.shape[0]) else {
      throw PTrainError("\(path): 7.bias has shape \(head.shape); the head needs 2 to \(Self.maximumClasses) classes")
    }
    if let declared = metadata["classes"], declared != String(head.shape[0]) {
      throw PTrainError("\(path): __metadata__ says \(declared) classes but 7.bias has \(head.shape[0])")
    }
    let spec = ModelSpec(classes: head.shape[0])
    self.spec = spec
    var parameters = [Float](repeating: 0, count: spec.parameterCount)
    try parameters.withUnsafeMutableBufferPointer {
      try spec.readTorchTensors(from: file, into: $0.baseAddress!, path: path)
    }
    if let bad = parameters.firstIndex(where: { !$0.isFinite }) {
      throw PTrainError("\(path): \(spec.torchName(of: spec.tensor(containing: bad)!)) holds a non-finite value")
    }
    self.parameters = parameters
  }

  /// Whether the file holds a ptrain training state that `trainingState()` can restore.
  public var hasTrainingState: Bool { metadata["format"] == Self.format }

  /// The training state for resuming. Throws a one-line error when the file holds
  /// weights only, or when any part of the state is missing or out of range.
  public func trainingState() throws -> TrainingState {
    guard hasTrainingState else {
      throw PTrainError(
        "\(path): holds weights only, no ptrain training state; evaluate it or fine-tune from it instead")
    }
    func value(_ key: String) throws -> String {
      guard let text = metadata[key] else { throw PTrainError("\(path): __metadata__ has no \(key)") }
      return text
    }
    func integer(_ key: String, atLeast minimum: Int = 0) throws -> Int {
      guard let number = Int(try value(key)), number >= minimum else {
        throw PTrainError("\(path): __metadata__.\(key) is not an integer ≥ \(minimum)")
      }
      return number
    }
    guard try value("model") == "mnist-cnn" else {
      throw PTrainError("\(path): __metadata__.model is \(metadata["model"]!), not mnist-cnn")
    }
    guard let learningRate = Float(try value("learning_rate")), learningRate.isFinite, learningRate > 0 else {
      throw PTrainError("\(path): __metadata__.learning_rate is not a positive number")
    }
    let frozen = try value("frozen").split(separator: ",").map { name in
      do { return try ModelSpec.Layer(named: String(name)) } catch let error as PTrainError {
        throw PTrainError("\(path): __metadata__.frozen: \(error)")
      }
    }
    guard let seed = UInt64(try value("seed")) else {
      throw PTrainError("\(path): __metadata__.seed is not an integer from 0 to \(UInt64.max)")
    }
    let options = TrainingOptions(
      threads: 1, epochs: try integer("epochs", atLeast: 1), batchSize: try integer("batch_size", atLeast: 1),
      learningRate: learningRate, seed: seed, shardSize: try integer("shard_size", atLeast: 1),
      frozen: Set(frozen))
    do { try options.validate() } catch let error as PTrainError {
      throw PTrainError("\(path): __metadata__ holds settings train refuses: \(error)")
    }
    let words = try value("rng_state").split(separator: ",").compactMap { UInt64($0, radix: 16) }
    guard words.count == 4, words.contains(where: { $0 != 0 }) else {
      throw PTrainError("\(path): __metadata__.rng_state is not four non-zero hex words")
    }
    var generator = SeededGenerator(seed: 0)
    generator.state = (words[0], words[1], words[2], words[3])
    guard let epochLoss = Double(try value("epoch_loss_sum")), epochLoss.isFinite, epochLoss >= 0 else {
      throw PTrainError("\(path): __metadata__.epoch_loss_sum is not a non-negative number")
    }
    var moments: [[Float]] = []
    for kind in ["exp_avg", "exp_avg_sq"] {
      var values = [Float](repeating: 0, count: spec.parameterCount)
      try values.withUnsafeMutableBufferPointer {
        try spec.readTorchTensors(from: file, prefix: "optimizer.\(kind).", into: $0.baseAddress!, path: path)
      }
      if let bad = values.firstIndex(where: { !$0.isFinite || (kind == "exp_avg_sq" && $0 < 0) }) {
        throw PTrainError(
          "\(path): optimizer.\(kind).\(spec.torchName(of: spec.tensor(containing: bad)!)) is out of range")
      }
      moments.append(values)
    }
    let state = TrainingState(
      spec: spec, options: options, parameters: parameters, firstMoment: moments[0], secondMoment: moments[1],
      adamStep: try integer("adam_step"), epochsCompleted: try integer("epochs_completed"),
      stepsIntoEpoch: try integer("steps_into_epoch"), epochGenerator: generator, epochLoss: epochLoss,
      epochCorrect: try integer("epoch_correct"), dataFingerprint: try value("data"))
    do { try state.validatePosition() } catch let error as PTrainError {
      throw PTrainError("\(path): \(error)")
    }
    return state
  }

  /// The safetensors bytes of `state`, with `extra` added to `__metadata__`.
  /// Cost: O(parameters).
  public static func encode(_ state: TrainingState, extra: [String: String] = [:]) -> [UInt8] {
    let spec = state.spec
    let g = state.epochGenerator.state
    var metadata = extra
    let fields: [String: String] = [
      "format": format, "model": "mnist-cnn", "classes": String(spec.classes),
      "frozen": state.options.frozen.sorted().map(\.rawValue).joined(separator: ","),
      "epochs": String(state.options.epochs), "batch_size": String(state.options.batchSize),
      "learning_rate": "\(state.options.learningRate)", "seed": String(state.options.seed),
      "shard_size": String(state.options.shardSize), "optimizer": "adam (keras rule, beta1 0.9, beta2 0.999, eps 1e-7)",
      "adam_step": String(state.adamStep), "epochs_completed": String(state.epochsCompleted),
      "steps_into_epoch": String(state.stepsIntoEpoch),
      "rng_state": [g.0, g.1, g.2, g.3].map { String($0, radix: 16) }.joined(separator: ","),
      "epoch_loss_sum": "\(state.epochLoss)", "epoch_correct": String(state.epochCorrect),
      "data": state.dataFingerprint,
    ]
    metadata.merge(fields) { _, own in own }
    var tensors: [(name: String, shape: [Int], values: [Float])] = []
    for (prefix, values) in [
      ("", state.parameters), ("optimizer.exp_avg.", state.firstMoment), ("optimizer.exp_avg_sq.", state.secondMoment),
    ] {
      tensors += values.withUnsafeBufferPointer { spec.torchTensors($0.baseAddress!, prefix: prefix) }
    }
    return SafeTensors.encode(tensors: tensors, metadata: metadata)
  }

  /// Writes `state` to `path` atomically (see `writeFileAtomically`). Refuses a state
  /// with a non-finite parameter or moment, so no checkpoint ever holds NaN.
  /// Cost: O(parameters) plus two fsyncs.
  public static func save(_ state: TrainingState, to path: String, extra: [String: String] = [:]) throws {
    for (name, values) in [
      ("parameter", state.parameters), ("Adam moment", state.firstMoment), ("Adam moment", state.secondMoment),
    ] {
      if let bad = values.firstIndex(where: { !$0.isFinite }) {
        let tensor = state.spec.tensor(containing: bad)!
        throw PTrainError("not saving \(path): a \(name) of \(tensor.name) is not finite")
      }
    }
    try writeFileAtomically(encode(state, extra: extra), to: path)
  }
}
