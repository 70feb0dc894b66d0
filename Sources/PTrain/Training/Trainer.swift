import Synchronization

/// Data-parallel training of a sequential CNN (`ModelDefinition`) on pinned workers.
///
/// Each step first fills the shared prepared weights (Winograd and transposed filters),
/// each worker a slice. After a barrier it cuts the batch into shards of
/// `options.shardSize` images; worker `w` computes one contiguous block of shards, each
/// into its own gradient slot, and adds the pairs of the fixed reduction tree that lie
/// inside its block. After a second barrier every worker adds, over one contiguous slice
/// of the trainable parameters, the tree pairs that span blocks, and checks the sum for
/// non-finite values. After a third barrier, if every shard's loss and every gradient is
/// finite, each worker applies the optimizer to its slice; otherwise all stop before changing
/// anything. Which worker computes which shard never changes a bit of the result, so any
/// thread count gives the same parameters for the same seed.
///
/// A model with BatchNorm normalises with the whole batch's statistics, as PyTorch's
/// SyncBatchNorm does: each worker runs its images through the layers below a BatchNorm,
/// adds their per-channel sums to its shards' sums, and after a barrier every worker adds
/// the shards' sums in shard order; the backward pass does the same with the gradient's
/// sums. So BatchNorm adds one barrier per layer forward, and one backward where a
/// trainable layer lies below it, and still no bit depends on the thread count.
///
/// A whole epoch runs inside one `WorkerPool.run`. The trainer remembers where it is
/// (epoch, step, generator), so `state()` can be saved and `init(resuming:)` continues
/// bit for bit.
///
/// Threads: call `train`, `evaluate` and `loadParameters` from one thread at a time (a
/// second overlapping call stops the program: the pool refuses it). `train`'s `onEvent`
/// runs on worker 0's thread for `.step` events, at a point where no worker writes the
/// trainer, so `state()`, `parameterValues`, `parametersSHA256` and `requestStop()` are safe
/// there; `.epochFinished` events run on the thread that called `train`. `requestStop()` is
/// safe from any thread.
///
/// `@unchecked Sendable` so that `onEvent` and other threads can hold the trainer: its
/// mutable state is written only by the one thread inside `init`, `train`, `evaluate` or
/// `loadParameters`, or by its workers under the step protocol above, and is read from a
/// `.step` event only while no worker writes it.
public final class Trainer: @unchecked Sendable {
  public let model: ModelDefinition
  public let plan: ModelPlan
  public private(set) var options: TrainingOptions
  /// How images are standardised: the training set's statistics, or given.
  public let normalization: Normalization
  public let pool: WorkerPool
  /// The processes training this model together (`ProcessGroup.single` unless under MPI).
  public let processes: ProcessGroup
  /// The parameters, laid out as `plan` documents.
  package let parameters: AlignedFloats
  /// BatchNorm's running means and variances (`plan.stateTensors`).
  package let runningStatistics: AlignedFloats
  /// Training steps the BatchNorm running statistics have seen (PyTorch's
  /// `num_batches_tracked`).
  public internal(set) var batchesTracked = 0
  package let optimizer: any Optimizer
  /// Whole epochs finished, and steps finished in the epoch after them.
  public internal(set) var epochsCompleted = 0
  public internal(set) var stepsIntoEpoch = 0

  /// The generator before it shuffled epoch `epochsCompleted + 1`. It first drew the
  /// initial parameters; each epoch's shuffle then continues it.
  var epochGenerator: SeededGenerator
  /// Summed loss and correct count of the finished steps of the current epoch.
  var epochLoss = 0.0
  var epochCorrect = 0
  /// The fingerprint of the data the current position refers to.
  var dataFingerprint = ""
  private let stopFlag = Atomic<Bool>(false)
  /// Whether `requestStop()` was called since the last `train` ended.
  var stopRequested: Bool { stopFlag.load(ordering: .relaxed) }
  /// Set by worker 0 when a step met a non-finite loss or gradient.
  var failure: PTrainError?

  private(set) var replicas: [Replica] = []
  /// The filters the replicas read, filled by all workers.
  let prepared: PreparedWeights
  private(set) var slots: [AlignedFloats] = []
  /// Per-shard loss sums and correct counts, one cache line per shard.
  let shardStats: AlignedFloats
  static let statsStride = 16
  /// Per-shard sums at each BatchNorm layer: forward `Σ(x−K)`, `Σ(x−K)²` (Doubles) and
  /// backward `Σ dy`, `Σ dy·x̂` (Floats), 2 · channels per layer, shard after shard.
  let batchInputSums: UnsafeMutablePointer<Double>
  let batchGradientSums: UnsafeMutablePointer<Float>
  let batchSumOffsets: [Int: Int]
  let batchSumStride: Int
  /// Per worker: where it adds up the shards' sums, 2 · the widest BatchNorm each.
  let workerInputSums: UnsafeMutablePointer<Double>
  let workerGradientSums: UnsafeMutablePointer<Float>
  let workerSumStride: Int
  /// Per-worker phase nanoseconds, one cache line per worker: compute, barrier, reduce,
  /// optimizer, sync.
  let phaseNanoseconds: UnsafeMutablePointer<UInt64>
  static let phaseStride = 8
  /// Decisions shared at barriers, one cache line each: line 0 holds "stop before the
  /// next step", written by worker 0 after each step; line `w + 1` the first non-finite
  /// gradient index worker `w` found, or -1.
  let flags: UnsafeMutablePointer<Int>
  static let flagStride = 8
  /// About how many bytes of images kept in their files `train` and `evaluate` read
  /// ahead (at least a step's or an image's). Set it between calls.
  package var stagedBytes = 4 << 20
  /// The most images a step can have: the buffers' size (see `init`'s `trainingImages`).
  public let stepCapacity: Int
  /// Time per phase over every `train` call so far, averaged over the workers.
  public internal(set) var profile = PhaseProfile()
  /// Called on worker 0 in every step, before the update, with the batch's summed
  /// gradient (the trainable layers' entries; frozen ones hold nothing meaningful) and
  /// the batch's image count: for tests that compare a step with a reference. Set it
  /// between calls.
  package var observeGradient: ((UnsafeBufferPointer<Float>, Int) -> Void)?

  /// Creates the workers, their replicas and gradient slots, and draws the initial
  /// parameters from `options.seed`. `normalization` is how image bytes become the
  /// model's input, one mean and deviation per input channel: the training set's
  /// (`Normalization(of:)`), a checkpoint's, `.mnist`, or `.byteScale(channels:)` for
  /// bytes / 255 alone; there is no default, so that no model trains with another data
  /// set's statistics by omission. Throws when the options do not fit the model (a
  /// frozen layer without parameters, every layer frozen, normalisation for another
  /// channel count). With several `processes`, each process makes its own trainer with
  /// the same arguments (its workers take its share of the node's cores), and `train`
  /// makes them work as one. With `trainingImages` (the most images `train` will be given),
  /// buffers are sized for steps of `min(batchSize, trainingImages)` images, not a whole
  /// batch; throws when what the run needs (`MemoryEstimate`) is more than the memory
  /// available. Cost: thread start-up plus O(parameters · shards).
  public init(
    options: TrainingOptions, model: ModelDefinition = .mnistCNN, normalization: Normalization,
    topology: Topology? = nil, processes: ProcessGroup = .single, trainingImages: Int? = nil
  ) throws {
    try options.validate()
    let plan = try ModelPlan(model)
    guard normalization.mean.count == model.input.channels else {
      throw PTrainError(
        "the normalisation has \(normalization.mean.count) channel(s) but the model's input has \(model.input.channels)"
      )
    }
    for index in options.frozen where index >= plan.layers.count || !plan.layers[index].hasParameters {
      throw PTrainError("layer \(index) cannot be frozen: it has no parameters")
    }
    guard plan.parameterLayers.contains(where: { !options.frozen.contains($0.index) }) else {
      throw PTrainError("every layer with parameters is frozen; leave at least one to train")
    }
    self.options = options
    self.model = model
    self.plan = plan
    self.normalization = normalization
    self.processes = processes
    // Ranks that share a node split its cores, unless each is bound already (mpirun
    // --bind-to core, a scheduler): then each plans inside its own binding.
    let topology = try topology ?? Topology()
    let split = !topology.isRestricted
    pool = try WorkerPool(
      topology: topology, threads: options.threads, localRank: split ? processes.localRank : 0,
      localRanks: split ? processes.localSize : 1)
    // Buffers for the largest step that can occur: the batch, or all the training images
    // when there are fewer; refused in one line when the machine cannot hold them.
    let stepImages = min(options.batchSize, max(trainingImages ?? options.batchSize, 1))
    stepCapacity = stepImages
    let memory = MemoryEstimate(plan: plan, options: options, workers: pool.count, stepImages: stepImages)
    if let available = availableMemory(), memory.total > available {
      throw PTrainError(
        "training this model needs about \(MemoryEstimate.describe(memory.total)) (parameters and optimizer state \(MemoryEstimate.describe(memory.parameters)), gradients \(MemoryEstimate.describe(memory.gradients)), \(pool.count) workers' activations \(MemoryEstimate.describe(memory.replicas))) but \(MemoryEstimate.describe(available)) of memory are available; take a smaller batch, fewer threads or a smaller model"
      )
    }
    var generator = SeededGenerator(seed: options.seed)
    parameters = AlignedFloats(count: plan.parameterCount)
    parameters.copy(from: plan.initialParameters(using: &generator))
    runningStatistics = AlignedFloats(count: plan.stateCount)
    runningStatistics.copy(from: plan.initialState)
    epochGenerator = generator
    optimizer = options.optimizer.makeOptimizer(parameterCount: plan.parameterCount)
    let shards = MemoryEstimate.shards(options: options, stepImages: stepImages)
    shardStats = AlignedFloats(count: shards * Self.statsStride)
    var offsets: [Int: Int] = [:]
    var width = 0
    for index in plan.batchNormLayers {
      offsets[index] = width
      width += 2 * plan.layers[index].runningMean!.count
    }
    batchSumOffsets = offsets
    batchSumStride = roundUp(max(width, 1), toMultipleOf: 16)
    batchInputSums = .allocate(capacity: shards * batchSumStride)
    batchInputSums.initialize(repeating: 0, count: shards * batchSumStride)
    batchGradientSums = .allocate(capacity: shards * batchSumStride)
    batchGradientSums.initialize(repeating: 0, count: shards * batchSumStride)
    let widest = plan.batchNormLayers.map { 2 * plan.layers[$0].runningMean!.count }.max() ?? 1
    workerSumStride = roundUp(widest, toMultipleOf: 16)
    workerInputSums = .allocate(capacity: pool.count * workerSumStride)
    workerInputSums.initialize(repeating: 0, count: pool.count * workerSumStride)
    workerGradientSums = .allocate(capacity: pool.count * workerSumStride)
    workerGradientSums.initialize(repeating: 0, count: pool.count * workerSumStride)
    phaseNanoseconds = .allocate(capacity: pool.count * Self.phaseStride)
    phaseNanoseconds.initialize(repeating: 0, count: pool.count * Self.phaseStride)
    flags = .allocate(capacity: (pool.count + 2) * Self.flagStride)
    flags.initialize(repeating: 0, count: (pool.count + 2) * Self.flagStride)
    let prepared = PreparedWeights(plan: plan, inputGradients: plan.inputGradients(frozen: options.frozen))
    self.prepared = prepared
    // Without BatchNorm a worker holds one shard's images at a time; with it, all of its
    // block's.
    let workers = pool.count
    let imageSlots = MemoryEstimate.replicaSlots(plan: plan, options: options, workers: workers, shards: shards)
    var replicas = [Replica?](repeating: nil, count: workers)
    var slots = [AlignedFloats?](repeating: nil, count: shards)
    replicas.withUnsafeMutableBufferPointer { replicaSlots in
      slots.withUnsafeMutableBufferPointer { gradientSlots in
        // Each worker writes only its own replica and its own shards' slots.
        nonisolated(unsafe) let (replicaSlots, gradientSlots) = (replicaSlots, gradientSlots)
        pool.run { worker in  // first touch on the worker's own NUMA node
          replicaSlots[worker] = Replica(
            plan: plan, slots: imageSlots, shardImages: options.shardSize,
            denseBlockImages: MemoryEstimate.blockImages(options: options, workers: workers, shards: shards),
            frozen: options.frozen,
            normalization: normalization, prepared: prepared, fusions: options.fusions)
          for shard in evenShare(of: shards, part: worker, parts: workers) {
            gradientSlots[shard] = AlignedFloats(count: plan.parameterCount)
          }
        }
      }
    }
    self.replicas = replicas.map { $0! }
    self.slots = slots.map { $0! }
  }

  deinit {
    phaseNanoseconds.deallocate()
    flags.deallocate()
    batchInputSums.deallocate()
    batchGradientSums.deallocate()
    workerInputSums.deallocate()
    workerGradientSums.deallocate()
  }

  /// A copy of the parameters.
  public var parameterValues: [Float] { parameters.array }

  /// SHA-256 of the parameters' little-endian bytes in layout order, then of the
  /// BatchNorm running statistics' (none for a model without BatchNorm).
  public var parametersSHA256: String {
    var hash = SHA256()
    hash.update(UnsafeRawBufferPointer(start: parameters.base, count: parameters.count * 4))
    if runningStatistics.count > 0 {
      hash.update(UnsafeRawBufferPointer(start: runningStatistics.base, count: runningStatistics.count * 4))
    }
    return hash.finalize().map { String(format2: $0) }.joined()
  }

  /// Overwrites the parameters (and BatchNorm statistics) of the layers at `layers` with
  /// theirs in `values` and `state`, buffers laid out for `source`, whose layers at these
  /// indices must be the same: for starting from pre-trained weights. Call between `train`
  /// calls. Cost: O(parameters).
  public func loadParameters(
    _ values: [Float], state sourceState: [Float] = [], from source: ModelPlan, layers: Set<Int>
  ) throws {
    try values.withUnsafeBufferPointer { values in
      try sourceState.withUnsafeBufferPointer { state in
        try plan.copyLayers(
          layers, from: source, values: values, state: state, into: parameters.base, statistics: runningStatistics.base)
      }
    }
  }

  /// Everything needed to continue this run later. Safe to call between `train` calls
  /// and from a `.step` event handler. Cost: O(parameters).
  public func state() -> TrainingState {
    TrainingState(
      model: model, normalization: normalization, options: options, parameters: parameters.array,
      runningStatistics: runningStatistics.array, batchesTracked: batchesTracked,
      optimizerState: optimizer.state.map(\.array), optimizerStep: optimizer.step, epochsCompleted: epochsCompleted,
      stepsIntoEpoch: stepsIntoEpoch, epochGenerator: epochGenerator, epochLoss: epochLoss,
      epochCorrect: epochCorrect, dataFingerprint: dataFingerprint)
  }

  /// Asks a running `train` to stop once the step in progress has been applied; from a
  /// `.step` event handler, before the next step. The work the other workers have begun
  /// on that next step is discarded. Safe from any thread (a signal handler should go
  /// through a dispatch source).
  public func requestStop() { stopFlag.store(true, ordering: .relaxed) }

  /// Trains over `data` until `untilEpoch` (by default `options.epochs`) epochs are
  /// complete, continuing from the current position, and evaluates on `test` after each
  /// finished epoch when given.
  ///
  /// `onEvent` receives `.step` after every step on worker 0's thread, once the step's
  /// update is applied and before the next one changes anything: the other workers wait
  /// for it at the next step's first barrier, so keep it short. It may read the trainer
  /// (`state()`, `parameterValues`) and call `requestStop()` there, but not call `train` or
  /// `evaluate`, which need the workers. `.epochFinished` arrives on the calling thread,
  /// after the epoch's evaluation, where any call but `train` is fine. Delivering step
  /// events on the calling thread instead would cost every step a wake-up and a barrier.
  ///
  /// Returns early, with `stopped` set, when `requestStop()` was called. Throws, leaving
  /// the parameters as they were before the offending step, when a loss or gradient is
  /// not finite, when the images are not the model's input shape, or when resuming
  /// mid-epoch on different data. Cost: `plan.executedTrainingFlopsPerImage` per image.
  @discardableResult
  public func train(
    _ data: LabeledImages, evaluatingOn test: LabeledImages? = nil, untilEpoch: Int? = nil,
    onEvent: @Sendable (TrainingEvent) -> Void = { _ in }
  ) throws -> TrainingSummary {
    let target = untilEpoch ?? options.epochs
    try requireShape(of: data, "training data")
    if let test { try requireShape(of: test, "test data") }
    let fingerprint = data.fingerprint
    if stepsIntoEpoch > 0 && fingerprint != dataFingerprint {
      throw PTrainError(
        "cannot continue mid-epoch on different data: the run was on \(dataFingerprint), this is \(fingerprint)")
    }
    guard data.count > 0 else { throw PTrainError("no training images") }
    guard min(options.batchSize, data.count) <= stepCapacity else {
      throw PTrainError(
        "a step of \(min(options.batchSize, data.count)) images is more than this trainer was made for (\(stepCapacity), from its trainingImages)"
      )
    }
    let stepsPerEpoch = (data.count + options.batchSize - 1) / options.batchSize
    guard stepsIntoEpoch <= stepsPerEpoch else {
      throw PTrainError(
        "cannot continue after step \(stepsIntoEpoch) of an epoch that has \(stepsPerEpoch) steps on this data")
    }
    if processes.size > 1 { try requireTheSameRunOnEveryRank(fingerprint: fingerprint, target: target) }
    try LabeledImages.requireLabels(data.labels, below: plan.classes, name: "training data")
    if let test { try LabeledImages.requireLabels(test.labels, below: plan.classes, name: "test data") }
    dataFingerprint = fingerprint
    let clock = ContinuousClock()
    let runStart = clock.now
    var reports: [EpochReport] = []
    var trainSeconds = 0.0
    var trainedImages = 0
    var stopped = false
    defer { collectProfile() }
    while epochsCompleted < target {
      // Every rank stops before the same epoch, even when a stop request reached only one
      // during the last epoch's evaluation (inside an epoch, `finishStep` agrees).
      let stopHere = stopFlag.load(ordering: .relaxed)
      if processes.size > 1 ? processes.maximum(stopHere ? 1 : 0) != 0 : stopHere {
        stopped = true
        break
      }
      let shuffleStart = clock.now
      var order = (0..<data.count).map { Int32($0) }
      var generator = epochGenerator
      generator.shuffle(&order)
      profile.data += (clock.now - shuffleStart).seconds
      let firstStep = stepsIntoEpoch
      let epochStart = clock.now
      let finishedEpoch = try trainEpoch(data, order: order, target: target, onEvent: onEvent)
      let seconds = (clock.now - epochStart).seconds
      trainSeconds += seconds
      trainedImages += min((stepsIntoEpoch - firstStep) * options.batchSize, data.count - firstStep * options.batchSize)
      if let failure {
        self.failure = nil
        throw failure
      }
      guard finishedEpoch else {
        stopped = true
        break
      }
      let report = EpochReport(
        epoch: epochsCompleted + 1, trainLoss: epochLoss / Double(data.count),
        trainAccuracy: Double(epochCorrect) / Double(data.count), trainSeconds: seconds,
        imagesPerSecond: Double(data.count - firstStep * options.batchSize) / seconds, test: try test.map(evaluate),
        learningRate: options.learningRate(
          atStep: optimizer.step - 1, stepsPerEpoch: (data.count + options.batchSize - 1) / options.batchSize))
      epochsCompleted += 1
      stepsIntoEpoch = 0
      epochLoss = 0
      epochCorrect = 0
      epochGenerator = generator
      reports.append(report)
      onEvent(.epochFinished(report))
    }
    if stopped { stopFlag.store(false, ordering: .relaxed) }
    return TrainingSummary(
      epochs: reports, imagesPerSecond: trainSeconds > 0 ? Double(trainedImages) / trainSeconds : 0,
      seconds: (clock.now - runStart).seconds, stopped: stopped)
  }
}

extension Duration {
  /// The duration in seconds.
  var seconds: Double {
    let (s, attoseconds) = components
    return Double(s) + Double(attoseconds) * 1e-18
  }
}
