/// A `.safetensors` checkpoint.
///
/// The model's tensors use PyTorch's names and layouts (see `ModelPlan.torchTensors`), so
/// `load_state_dict(strict=True)` on the same `nn.Sequential` accepts them. The model
/// text, the normalisation, the hyper-parameters and the rest of the training state go
/// into `__metadata__`, and the optimizer's state rides along under PyTorch's names for it:
/// `optimizer.exp_avg.<name>` and `optimizer.exp_avg_sq.<name>` for Adam and AdamW,
/// `optimizer.momentum_buffer.<name>` for SGD with momentum. A file with the model's tensors only (a
/// `state_dict` PyTorch saved, say) can be evaluated and fine-tuned from, but not resumed;
/// it is read with the model and normalisation given to `init(path:model:normalization:)`,
/// since it names neither.
public struct Checkpoint: Sendable {
  /// The value of `__metadata__.format` in every checkpoint ptrain writes.
  package static let format = "ptrain.checkpoint.v1"
  /// The most classes a checkpoint's head may have.
  package static let maximumClasses = 4096

  public let path: String
  public let model: ModelDefinition
  public let plan: ModelPlan
  /// The model's parameters in ptrain's layout, and its BatchNorm running statistics.
  public let parameters: [Float]
  public let runningStatistics: [Float]
  public let batchesTracked: Int
  /// How the model's inputs were standardised: the file's `__metadata__.normalize`, else
  /// the one given to `init`.
  public let normalization: Normalization
  public let metadata: [String: String]
  private let file: SafeTensors

  /// Reads and validates the checkpoint at `path`. Every problem becomes a one-line
  /// error naming the file.
  ///
  /// A file that stores no model text (a PyTorch `state_dict`) is read as `model`, with
  /// the class count of the file's head; without `model` it must be the MNIST CNN's
  /// tensors. A file that stores no normalisation takes `normalization`; without it only
  /// ptrain's own files from before normalisation was stored (all trained on MNIST) load,
  /// with MNIST's. Both are ignored for files that store their own. Cost: one read of the
  /// file plus O(parameters).
  public init(path: String, model: ModelDefinition? = nil, normalization: Normalization? = nil) throws {
    try self.init(file: SafeTensors.read(path: path), path: path, model: model, normalization: normalization)
  }

  /// Validates checkpoint `bytes` already in memory; `name` starts every error.
  /// Cost: O(bytes).
  package init(bytes: [UInt8], name: String) throws {
    try self.init(file: SafeTensors.parse(bytes, name: name), path: name, model: nil, normalization: nil)
  }

  /// The `__metadata__` entries ptrain reads, and may print in messages.
  static let textFields = [
    "format", "model", "model_text", "normalize", "augment", "classes", "frozen", "dataset", "data_directory", "data",
    "train_images", "source_model", "new_head", "epochs", "batch_size", "learning_rate", "seed", "shard_size",
    "optimizer", "optimizer_settings", "lr_schedule", "warmup_steps", "label_smoothing", "optimizer_step", "adam_step",
    "epochs_completed", "steps_into_epoch", "rng_state", "epoch_loss_sum", "epoch_correct", "test_accuracy",
    "test_loss", "validation_split", "best_validation_accuracy", "best_epoch", "save_best", "early_stop",
    "early_stopped_after_epoch", "class_names", "image_size",
  ]

  private init(file: SafeTensors, path: String, model given: ModelDefinition?, normalization assumed: Normalization?)
    throws
  {
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
    let model = try Self.model(of: file, metadata: metadata, path: path, given: given)
    self.model = model
    let plan = try ModelPlan(model)
    self.plan = plan
    if let declared = metadata["classes"], declared != String(plan.classes) {
      throw PTrainError("\(path): __metadata__ says \(declared) classes but the model has \(plan.classes)")
    }
    if let text = metadata["class_names"], Self.names(in: text)?.count != plan.classes {
      throw PTrainError("\(path): __metadata__.class_names is not a JSON array of \(plan.classes) strings")
    }
    let normalization: Normalization
    if let text = metadata["normalize"] {
      do { normalization = try Normalization(parsing: text, channels: model.input.channels) } catch let error
        as PTrainError
      {
        throw PTrainError("\(path): __metadata__.normalize: \(error)")
      }
    } else if let assumed {
      normalization = assumed
    } else if metadata["format"] == Self.format && model.input.channels == 1 {
      normalization = .mnist  // ptrain's files from before normalisation was stored
    } else {
      throw PTrainError(
        "\(path) does not say how its images were standardised; give the training set's per-channel mean and standard deviation of pixel/255 with --normalize (MNIST's are 0.1307,0.3081)"
      )
    }
    self.normalization = normalization
    guard normalization.mean.count == model.input.channels else {
      throw PTrainError(
        "\(path): the normalisation given has \(normalization.mean.count) channel(s) but the model's input has \(model.input.channels)"
      )
    }
    var parameters = [Float](repeating: 0, count: plan.parameterCount)
    try parameters.withUnsafeMutableBufferPointer {
      try plan.readTorchTensors(from: file, into: $0.baseAddress!, path: path)
    }
    if let bad = parameters.firstIndex(where: { !$0.isFinite }) {
      throw PTrainError("\(path): \(plan.tensor(containing: bad)!.name) holds a non-finite value")
    }
    var statistics = plan.initialState
    try statistics.withUnsafeMutableBufferPointer {
      try plan.readTorchTensors(from: file, of: plan.stateTensors, into: $0.baseAddress!, path: path)
    }
    for tensor in plan.stateTensors {
      let isVariance = tensor.name.hasSuffix("running_var")
      if statistics[tensor.range].contains(where: { !$0.isFinite || (isVariance && $0 < 0) }) {
        throw PTrainError("\(path): \(tensor.name) holds a value out of range")
      }
    }
    var tracked = 0
    if let first = plan.batchNormLayers.first {
      let name = "\(plan.layers[first].torchPath).num_batches_tracked"
      guard let values = try? file.integers(name), values.count == 1, values[0] >= 0 else {
        throw PTrainError("\(path): \(name) is missing or not one non-negative I64")
      }
      tracked = Int(values[0])
    }
    self.parameters = parameters
    runningStatistics = statistics
    batchesTracked = tracked
  }

  /// The model a file holds: its model text; for files without one (PyTorch's, or
  /// ptrain's before models were data), `given` or else the MNIST CNN, with the class count
  /// of the file's head.
  private static func model(
    of file: SafeTensors, metadata: [String: String], path: String, given: ModelDefinition?
  ) throws -> ModelDefinition {
    if let text = metadata["model_text"] {
      do { return try ModelDefinition(parsing: text) } catch let error as PTrainError {
        throw PTrainError("\(path): __metadata__.model_text: \(error)")
      }
    }
    if given == nil, let name = metadata["model"], name != "mnist-cnn" {
      throw PTrainError(
        "\(path): __metadata__.model is \(name) but there is no model_text to build it from; give the model with --model"
      )
    }
    let model = given ?? .mnistCNN
    // The head is the last layer, a dense one: its weight is classes × inputs in PyTorch.
    let weight = "\(try ModelPlan(model).layers.last!.torchPath).weight"
    guard let head = file.entries[weight] else {
      let hint =
        given == nil
        ? "is it a checkpoint of the MNIST CNN? Give the model it was saved from with --model"
        : "was it saved from the model given (\(model.text))?"
      throw PTrainError("\(path): has no model text in __metadata__ and no tensor \(weight); \(hint)")
    }
    guard head.shape.count == 2, (2...Self.maximumClasses).contains(head.shape[0]) else {
      throw PTrainError(
        "\(path): \(weight) has shape \(head.shape); the head needs 2 to \(Self.maximumClasses) classes")
    }
    return head.shape[0] == model.classes ? model : try model.withHead(classes: head.shape[0])
  }

  /// The name of each class, by class number: the `class_names` the training data gave
  /// (an image folder's class folders, Fashion-MNIST's garments), else Fashion-MNIST's
  /// for a checkpoint of it from before they were stored, else the class numbers.
  public var classNames: [String] {
    if let names = metadata["class_names"].flatMap(Self.names(in:)) { return names }
    if metadata["dataset"] == "fashion-mnist" && plan.classes == Dataset.fashionMNISTClassNames.count {
      return Dataset.fashionMNISTClassNames
    }
    return (0..<plan.classes).map(String.init)
  }

  /// The strings of a JSON array of strings; nil for any other text.
  private static func names(in text: String) -> [String]? {
    guard case .array(let values)? = try? JSONParser.parse(Array(text.utf8)) else { return nil }
    let names = values.compactMap { value -> String? in
      if case .string(let name) = value { return name }
      return nil
    }
    return names.count == values.count ? names : nil
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
    func integer(_ key: String, atLeast minimum: Int = 0, default fallback: Int? = nil) throws -> Int {
      if let fallback, metadata[key] == nil { return fallback }
      guard let number = Int(try value(key)), number >= minimum else {
        throw PTrainError("\(path): __metadata__.\(key) is not an integer ≥ \(minimum)")
      }
      return number
    }
    guard let learningRate = Float(try value("learning_rate")), learningRate.isFinite, learningRate > 0 else {
      throw PTrainError("\(path): __metadata__.learning_rate is not a positive number")
    }
    let frozen = try value("frozen").split(separator: ",").map { name in
      do { return try plan.parameterLayer(named: String(name)) } catch let error as PTrainError {
        throw PTrainError("\(path): __metadata__.frozen: \(error)")
      }
    }
    guard let seed = UInt64(try value("seed")) else {
      throw PTrainError("\(path): __metadata__.seed is not an integer from 0 to \(UInt64.max)")
    }
    let augmentation: Augmentation
    do { augmentation = try metadata["augment"].map(Augmentation.init(parsing:)) ?? .none } catch let error
      as PTrainError
    {
      throw PTrainError("\(path): __metadata__.augment: \(error)")
    }
    // Files from before other optimizers and schedules were Adam at a constant rate.
    let optimizerSettings: OptimizerSettings
    let schedule: LearningRateSchedule
    do {
      optimizerSettings = try metadata["optimizer_settings"].map(OptimizerSettings.init(parsing:)) ?? .adam
      schedule = try LearningRateSchedule(
        parsing: metadata["lr_schedule"] ?? "constant", warmupSteps: try integer("warmup_steps", default: 0))
    } catch let error as PTrainError where !error.description.hasPrefix(path) {
      throw PTrainError("\(path): __metadata__: \(error)")
    }
    guard let smoothing = Float(metadata["label_smoothing"] ?? "0") else {
      throw PTrainError("\(path): __metadata__.label_smoothing is not a number")
    }
    let options = TrainingOptions(
      threads: 1, epochs: try integer("epochs", atLeast: 1), batchSize: try integer("batch_size", atLeast: 1),
      learningRate: learningRate, seed: seed, shardSize: try integer("shard_size", atLeast: 1),
      frozen: Set(frozen), augmentation: augmentation, optimizer: optimizerSettings, schedule: schedule,
      labelSmoothing: smoothing)
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
    let optimizer = optimizerSettings.makeOptimizer(parameterCount: 0)
    var optimizerState: [[Float]] = []
    for kind in optimizer.stateNames {
      var values = [Float](repeating: 0, count: plan.parameterCount)
      try values.withUnsafeMutableBufferPointer {
        try plan.readTorchTensors(from: file, prefix: "optimizer.\(kind).", into: $0.baseAddress!, path: path)
      }
      if let bad = values.firstIndex(where: { !optimizer.isValid($0, inState: kind) }) {
        throw PTrainError("\(path): optimizer.\(kind).\(plan.tensor(containing: bad)!.name) is out of range")
      }
      optimizerState.append(values)
    }
    let state = TrainingState(
      model: model, normalization: normalization, options: options, parameters: parameters,
      runningStatistics: runningStatistics, batchesTracked: batchesTracked, optimizerState: optimizerState,
      optimizerStep: try integer(metadata["optimizer_step"] == nil ? "adam_step" : "optimizer_step"),
      epochsCompleted: try integer("epochs_completed"),
      stepsIntoEpoch: try integer("steps_into_epoch"), epochGenerator: generator, epochLoss: epochLoss,
      epochCorrect: try integer("epoch_correct"), dataFingerprint: try value("data"))
    do { try state.validatePosition() } catch let error as PTrainError {
      throw PTrainError("\(path): \(error)")
    }
    return state
  }

  /// The safetensors bytes of `state`, with `extra` added to `__metadata__`.
  /// Cost: O(parameters).
  package static func encode(_ state: TrainingState, extra: [String: String] = [:]) -> [UInt8] {
    let plan = try! ModelPlan(state.model)  // a state's model was planned when it trained
    let g = state.epochGenerator.state
    let optimizer = state.options.optimizer.makeOptimizer(parameterCount: 0)
    var metadata = extra
    let frozenNames = state.options.frozen.sorted().map { plan.layers[$0].name }
    let fields: [String: String] = [
      "format": format, "model": state.model.builtInName ?? "custom", "model_text": state.model.text,
      "normalize": state.normalization.description, "augment": state.options.augmentation.description,
      "classes": String(plan.classes), "frozen": frozenNames.joined(separator: ","),
      "epochs": String(state.options.epochs), "batch_size": String(state.options.batchSize),
      "learning_rate": "\(state.options.learningRate)", "seed": String(state.options.seed),
      "shard_size": String(state.options.shardSize), "optimizer": optimizer.description,
      "optimizer_settings": state.options.optimizer.description, "lr_schedule": state.options.schedule.description,
      "warmup_steps": String(state.options.schedule.warmupSteps),
      "label_smoothing": "\(state.options.labelSmoothing)",
      "optimizer_step": String(state.optimizerStep), "epochs_completed": String(state.epochsCompleted),
      "steps_into_epoch": String(state.stepsIntoEpoch),
      "rng_state": [g.0, g.1, g.2, g.3].map { String($0, radix: 16) }.joined(separator: ","),
      "epoch_loss_sum": "\(state.epochLoss)", "epoch_correct": String(state.epochCorrect),
      "data": state.dataFingerprint,
    ]
    metadata.merge(fields) { _, own in own }
    var tensors: [(name: String, shape: [Int], values: [Float])] = []
    tensors += state.parameters.withUnsafeBufferPointer { plan.torchTensors($0.baseAddress!) }
    tensors += state.runningStatistics.withUnsafeBufferPointer {
      plan.torchTensors($0.baseAddress!, of: plan.stateTensors)
    }
    for (name, values) in zip(optimizer.stateNames, state.optimizerState) {
      tensors += values.withUnsafeBufferPointer { plan.torchTensors($0.baseAddress!, prefix: "optimizer.\(name).") }
    }
    let tracked = plan.batchNormLayers.map {
      ("\(plan.layers[$0].torchPath).num_batches_tracked", [Int](), [Int64(state.batchesTracked)])
    }
    return SafeTensors.encode(tensors: tensors, integers: tracked, metadata: metadata)
  }

  /// Writes `state` to `path` atomically (see `writeFileAtomically`), with `data`'s
  /// `checkpointMetadata` (its name, directory and class names, as the CLI's checkpoints
  /// have them) when given, and `extra`. Refuses a state with a non-finite parameter or
  /// moment, so no checkpoint ever holds NaN. Cost: O(parameters) plus two fsyncs.
  public static func save(
    _ state: TrainingState, to path: String, data: Dataset? = nil, extra: [String: String] = [:]
  ) throws {
    let plan = try ModelPlan(state.model)
    for (name, values) in [("parameter", state.parameters)] + state.optimizerState.map({ ("optimizer state", $0) }) {
      if let bad = values.firstIndex(where: { !$0.isFinite }) {
        throw PTrainError("not saving \(path): a \(name) of \(plan.tensor(containing: bad)!.name) is not finite")
      }
    }
    if state.runningStatistics.contains(where: { !$0.isFinite }) {
      throw PTrainError("not saving \(path): a BatchNorm running statistic is not finite")
    }
    let described = data?.checkpointMetadata(trainImages: data!.train.count, classes: plan.classes) ?? [:]
    try writeFileAtomically(encode(state, extra: described.merging(extra) { _, given in given }), to: path)
  }
}
