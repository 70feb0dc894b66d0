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
/// finite, each worker applies Adam to its slice; otherwise all stop before changing
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
  public private(set) var batchesTracked = 0
  package let optimizer: any Optimizer
  /// Whole epochs finished, and steps finished in the epoch after them.
  public private(set) var epochsCompleted = 0
  public private(set) var stepsIntoEpoch = 0

  /// The generator before it shuffled epoch `epochsCompleted + 1`. It first drew the
  /// initial parameters; each epoch's shuffle then continues it.
  private var epochGenerator: SeededGenerator
  /// Summed loss and correct count of the finished steps of the current epoch.
  private var epochLoss = 0.0
  private var epochCorrect = 0
  /// The fingerprint of the data the current position refers to.
  private var dataFingerprint = ""
  private let stopFlag = Atomic<Bool>(false)
  /// Set by worker 0 when a step met a non-finite loss or gradient.
  private var failure: PTrainError?

  private var replicas: [Replica] = []
  /// The filters the replicas read, filled by all workers.
  private let prepared: PreparedWeights
  private var slots: [AlignedFloats] = []
  /// Per-shard loss sums and correct counts, one cache line per shard.
  private let shardStats: AlignedFloats
  private static let statsStride = 16
  /// Per-shard sums at each BatchNorm layer: forward `Σ(x−K)`, `Σ(x−K)²` (Doubles) and
  /// backward `Σ dy`, `Σ dy·x̂` (Floats), 2 · channels per layer, shard after shard.
  private let batchInputSums: UnsafeMutablePointer<Double>
  private let batchGradientSums: UnsafeMutablePointer<Float>
  private let batchSumOffsets: [Int: Int]
  private let batchSumStride: Int
  /// Per worker: where it adds up the shards' sums, 2 · the widest BatchNorm each.
  private let workerInputSums: UnsafeMutablePointer<Double>
  private let workerGradientSums: UnsafeMutablePointer<Float>
  private let workerSumStride: Int
  /// Per-worker phase nanoseconds, one cache line per worker: compute, barrier, reduce,
  /// optimizer, sync.
  private let phaseNanoseconds: UnsafeMutablePointer<UInt64>
  private static let phaseStride = 8
  /// Decisions shared at barriers, one cache line each: line 0 holds "stop before the
  /// next step", written by worker 0 after each step; line `w + 1` the first non-finite
  /// gradient index worker `w` found, or -1.
  private let flags: UnsafeMutablePointer<Int>
  private static let flagStride = 8
  /// About how many bytes of images kept in their files `train` and `evaluate` read
  /// ahead (at least a step's or an image's). Set it between calls.
  package var stagedBytes = 4 << 20
  /// The most images a step can have: the buffers' size (see `init`'s `trainingImages`).
  public let stepCapacity: Int
  /// Time per phase over every `train` call so far, averaged over the workers.
  public private(set) var profile = PhaseProfile()
  /// Called on worker 0 in every step, before the update, with the batch's summed
  /// gradient (the trainable layers' entries; frozen ones hold nothing meaningful) and
  /// the batch's image count: for tests that compare a step with a reference. Set it
  /// between calls.
  package var observeGradient: ((UnsafeBufferPointer<Float>, Int) -> Void)?

  /// Creates the workers, their replicas and gradient slots, and draws the initial
  /// parameters from `options.seed`. Throws when the options do not fit the model (a
  /// frozen layer without parameters, every layer frozen, normalisation for another
  /// channel count). With several `processes`, each process makes its own trainer with
  /// the same arguments (its workers take its share of the node's cores), and `train`
  /// makes them work as one. With `trainingImages` (the most images `train` will be given),
  /// buffers are sized for steps of `min(batchSize, trainingImages)` images, not a whole
  /// batch; throws when what the run needs (`MemoryEstimate`) is more than the memory
  /// available. Cost: thread start-up plus O(parameters · shards).
  public init(
    options: TrainingOptions, model: ModelDefinition = .mnistCNN, normalization: Normalization? = nil,
    topology: Topology? = nil, processes: ProcessGroup = .single, trainingImages: Int? = nil
  ) throws {
    try options.validate()
    let plan = try ModelPlan(model)
    let normalization = normalization ?? .mnist
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
        "training this model needs about \(MemoryEstimate.describe(memory.total)) (parameters and Adam \(MemoryEstimate.describe(memory.parameters)), gradients \(MemoryEstimate.describe(memory.gradients)), \(pool.count) workers' activations \(MemoryEstimate.describe(memory.replicas))) but \(MemoryEstimate.describe(available)) of memory are available; take a smaller batch, fewer threads or a smaller model"
      )
    }
    var generator = SeededGenerator(seed: options.seed)
    parameters = AlignedFloats(count: plan.parameterCount)
    parameters.copy(from: plan.initialParameters(using: &generator))
    runningStatistics = AlignedFloats(count: plan.stateCount)
    runningStatistics.copy(from: plan.initialState)
    epochGenerator = generator
    optimizer = Adam(parameterCount: plan.parameterCount, learningRate: options.learningRate)
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
            plan: plan, slots: imageSlots, shardImages: options.shardSize, frozen: options.frozen,
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

  /// Continues the run that `state` was saved from, on `threads` workers, until
  /// `epochs` epochs are complete (the saved run's target by default). Training from
  /// here gives bit-identical results to never having stopped.
  public convenience init(
    resuming state: TrainingState, threads: Int, epochs: Int? = nil, topology: Topology? = nil,
    processes: ProcessGroup = .single, trainingImages: Int? = nil
  ) throws {
    var options = state.options
    options.threads = threads
    if let epochs { options.epochs = epochs }
    try self.init(
      options: options, model: state.model, normalization: state.normalization, topology: topology,
      processes: processes, trainingImages: trainingImages)
    parameters.copy(from: state.parameters)
    runningStatistics.copy(from: state.runningStatistics)
    batchesTracked = state.batchesTracked
    optimizer.restore(step: state.optimizerStep, state: state.optimizerState)
    epochsCompleted = state.epochsCompleted
    stepsIntoEpoch = state.stepsIntoEpoch
    epochGenerator = state.epochGenerator
    epochLoss = state.epochLoss
    epochCorrect = state.epochCorrect
    dataFingerprint = state.dataFingerprint
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
      if stopFlag.load(ordering: .relaxed) {
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
        imagesPerSecond: Double(data.count - firstStep * options.batchSize) / seconds, test: try test.map(evaluate))
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

  /// Throws, on every rank, unless every rank holds the same model, options (but for the
  /// thread count), parameters, position and data: ranks started with other flags or other
  /// files would otherwise train different models in lockstep. Cost: one hash of the
  /// parameters and one small collective.
  private func requireTheSameRunOnEveryRank(fingerprint: String, target: Int) throws {
    let o = options
    let run = [
      model.text, normalization.description, "\(o.epochs) \(o.batchSize) \(o.learningRate) \(o.seed) \(o.shardSize)",
      "\(o.frozen.sorted()) \(o.augmentation)", fingerprint, "\(epochsCompleted) \(stepsIntoEpoch) \(optimizer.step)",
      "\(target)", parametersSHA256,
    ].joined(separator: "\n")
    var hash = SHA256()
    hash.update(Array(run.utf8))
    let digest = hash.finalize().prefix(8).reduce(Int64(0)) { $0 << 8 | Int64($1) }
    let all = processes.allgather([digest])
    if let other = all.firstIndex(where: { $0 != all[0] }) {
      throw PTrainError(
        "the \(processes.size) MPI processes disagree: rank \(other) has other options, model, data or starting point than rank 0; start every rank with the same flags and data"
      )
    }
  }

  /// Throws unless `data`'s images have the model's input shape.
  private func requireShape(of data: LabeledImages, _ name: String) throws {
    guard data.shape == model.input else {
      throw PTrainError("the \(name) are \(data.shape) images but the model's input is \(model.input)")
    }
  }

  /// Adds the workers' phase times to `profile` and clears them.
  private func collectProfile() {
    let workers = pool.count
    for worker in 0..<workers {
      let times = phaseNanoseconds + worker * Self.phaseStride
      let scale = 1e-9 / Double(workers)
      profile.compute += Double(times[0]) * scale
      profile.barrier += Double(times[1]) * scale
      profile.reduce += Double(times[2]) * scale
      profile.optimizer += Double(times[3]) * scale
      profile.sync += Double(times[4]) * scale
      profile.communicate += Double(times[5]) * scale
      for phase in 0..<6 { times[phase] = 0 }
    }
  }

  /// The parameter ranges of the layers that train.
  var trainableRanges: [Range<Int>] {
    plan.parameterLayers.filter { !options.frozen.contains($0.index) }.map(\.parameterRange)
  }

  /// The parameter ranges worker `worker` of `workers` reduces and updates: its share of
  /// the trainable layers' parameters, cut into slices of a multiple of 16.
  func ranges(ofWorker worker: Int, workers: Int) -> [Range<Int>] {
    let trainable = trainableRanges
    let total = trainable.reduce(0) { $0 + $1.count }
    let sliceLength = roundUp((total + workers - 1) / workers, toMultipleOf: 16)
    var wanted = min(worker * sliceLength, total)..<min((worker + 1) * sliceLength, total)
    var result: [Range<Int>] = []
    for range in trainable {
      let take = min(wanted.lowerBound, range.count)..<min(wanted.upperBound, range.count)
      if !take.isEmpty { result.append((range.lowerBound + take.lowerBound)..<(range.lowerBound + take.upperBound)) }
      wanted = max(wanted.lowerBound - range.count, 0)..<max(wanted.upperBound - range.count, 0)
    }
    return result
  }

  /// Runs the current epoch from step `stepsIntoEpoch`: in one fan-out for images in
  /// memory, else a segment of steps at a time (see `stagedBytes`). Returns whether it
  /// reached the end; it stops early on `requestStop()` or a non-finite value, and throws
  /// when a file the images are kept in has changed.
  private func trainEpoch(
    _ data: LabeledImages, order: [Int32], target: Int, onEvent: @Sendable (TrainingEvent) -> Void
  ) throws -> Bool {
    let batch = options.batchSize
    let shardSize = options.shardSize
    let workers = pool.count
    let steps = (data.count + batch - 1) / batch
    let firstStep = stepsIntoEpoch
    // With several processes, the step's shards are cut into ranks × workers blocks, rank
    // after rank, and so are the parameters the workers reduce and update.
    let processes = self.processes
    let ranks = processes.size
    let rank = processes.rank
    let blocks = ranks * workers
    let workerRanges = (0..<workers).map { ranges(ofWorker: rank * workers + $0, workers: blocks) }
    // Under MPI each worker first adds, over its share of all the parameters, the pairs
    // inside this rank's block that span its workers' blocks; the ranks then exchange one
    // partial sum per subtree of their blocks, and the reduce phase adds the pairs that
    // span ranks.
    let localRanges = (0..<workers).map { ranges(ofWorker: $0, workers: workers) }
    let reduceBlocks = ranks > 1 ? ranks : workers
    let exchange = ranks > 1 ? RankExchange(trainer: self, blocks: blocks) : nil
    let frozen = options.frozen
    let layerCount = plan.layers.count
    let batchNorms = plan.batchNormLayers
    // The backward runs segment by segment (the top one, then from each BatchNorm down to
    // the one below), and each shard's gradient of a segment's parameters is folded
    // (`foldLocalPairs`) as soon as that shard's segment is done, so that shards can take
    // turns in a few slots (`gradientSlotIndices`). Before that, the shard's slot is
    // cleared where gradients are added to it; a trainable dense layer's weight gradient
    // is written whole when the shard ends (`finishShard`), so only its bias is cleared.
    let topLayers = (batchNorms.last.map { $0 + 1 } ?? 0)..<layerCount
    let levelLayers = batchNorms.indices.map { level in
      (level > 0 ? batchNorms[level - 1] + 1 : 0)..<(batchNorms[level] + 1)
    }
    let trainableLayers = plan.parameterLayers.filter { !frozen.contains($0.index) }
    func trainable(_ layers: Range<Int>) -> [Range<Int>] {
      trainableLayers.filter { layers.contains($0.index) }.map(\.parameterRange)
    }
    func cleared(_ layers: Range<Int>) -> [Range<Int>] {
      trainableLayers.filter { layers.contains($0.index) }.flatMap { layer in
        layer.kernel == .gemv ? [layer.bias?.range].compactMap { $0 } : [layer.parameterRange]
      }
    }
    let (topTrainable, topCleared) = (trainable(topLayers), cleared(topLayers))
    let levelTrainable = levelLayers.map(trainable)
    let levelCleared = levelLayers.map(cleared)
    let seed = options.seed
    let augmentation = options.augmentation
    let epoch = epochsCompleted
    let imageBytes = data.shape.count
    nonisolated(unsafe) let params = parameters.base
    nonisolated(unsafe) let runningState = runningStatistics.base
    nonisolated(unsafe) let observeGradient = self.observeGradient
    // The slots each step's shards use: the full batches' map, and the last batch's.
    let slotBases = slots.map(\.base)
    func gradientSlots(count: Int) -> [UnsafeMutablePointer<Float>] {
      Self.gradientSlotIndices(
        shards: (count + shardSize - 1) / shardSize, blocks: blocks,
        localBlocks: (rank * workers)..<((rank + 1) * workers)
      ).map { slotBases[$0] }
    }
    nonisolated(unsafe) let fullBatchSlots = gradientSlots(count: min(batch, data.count))
    nonisolated(unsafe) let lastBatchSlots = gradientSlots(count: steps > 0 ? data.count - (steps - 1) * batch : 0)
    nonisolated(unsafe) let stats = shardStats.base
    let statsStride = Self.statsStride
    nonisolated(unsafe) let flags = self.flags
    let flagStride = Self.flagStride
    flags[0] = 0
    let clock = ContinuousClock()
    let start = clock.now
    // Images in memory are read where they are, in one fan-out. Images kept in their files
    // are read ahead a segment of steps at a time, in batch order, into `staged`.
    let inMemory = data.bytesInMemory
    let segmentSteps = inMemory != nil ? steps : max(1, stagedBytes / (batch * imageBytes))
    var staged = [UInt8](repeating: 0, count: inMemory != nil ? 0 : min(segmentSteps * batch, data.count) * imageBytes)
    /// Runs steps `segment` in one fan-out, with `images` the data's bytes, or the
    /// segment's staged in batch order from image `firstStaged` of the epoch on.
    func trainSegment(_ images: [UInt8], steps segment: Range<Int>, firstStaged: Int) {
      images.withUnsafeBufferPointer { pixels in
        data.labels.withUnsafeBufferPointer { labels in
          order.withUnsafeBufferPointer { order in
            // The workers share these buffers under the step's protocol (type comment):
            // between two barriers each element is written by at most one worker and read
            // by no other; the images, labels and order are only read.
            nonisolated(unsafe) let (pixels, labels, order) = (pixels, labels, order)
            pool.run { worker in
              let replica = replicas[worker]
              let myRanges = workerRanges[worker]
              let times = phaseNanoseconds + worker * Self.phaseStride
              let sums = workerInputSums + worker * workerSumStride
              let gradientSums = workerGradientSums + worker * workerSumStride
              var mark = monotonicNanoseconds()
              /// Adds the time since the last mark to `phase`.
              func charge(_ phase: Int) {
                let now = monotonicNanoseconds()
                times[phase] &+= now &- mark
                mark = now
              }
              for step in segment {
                let first = step * batch
                let count = min(batch, data.count - first)
                let shards = (count + shardSize - 1) / shardSize
                let slotBases = count == batch ? fullBatchSlots : lastBatchSlots
                // Phase 1: the prepared weights, a slice per worker; frozen layers' never
                // change, so they are filled once per fan-out.
                prepared.update(
                  from: params, part: worker, of: workers, skipping: step == segment.lowerBound ? [] : frozen)
                charge(0)
                pool.barrier.wait()
                charge(1)
                let globalStep = optimizer.step  // worker 0 advanced it before the last barrier
                let myShards = evenShare(of: shards, part: rank * workers + worker, parts: blocks)
                let firstImage = myShards.lowerBound * shardSize
                /// Where the image at `position` in the batch lives in the replica: its own slot
                /// when the replica holds the worker's whole block (BatchNorm), else its place
                /// in its shard.
                func slotIndex(_ position: Int) -> Int { (position - firstImage) % replica.slots }
                /// The images of shard `shard`: positions in the batch.
                func images(of shard: Int) -> Range<Int> { (shard * shardSize)..<min((shard + 1) * shardSize, count) }
                /// The replica's slots of shard `shard`'s images.
                func imageSlots(of shard: Int) -> Range<Int> {
                  let positions = images(of: shard)
                  let start = slotIndex(positions.lowerBound)
                  return start..<(start + positions.count)
                }
                func pass(position: Int) -> Replica.Pass {
                  var pass = Replica.Pass(parameters: params, state: runningState, training: true)
                  pass.seed = seed
                  pass.step = globalStep
                  pass.position = position
                  return pass
                }
                func load(_ position: Int) {
                  let index = Int(order[first + position])
                  let stagedAt = inMemory != nil ? index : first + position - firstStaged
                  replica.load(
                    image: pixels.baseAddress! + stagedAt * imageBytes, slot: slotIndex(position),
                    augmentation: augmentation, draw: augmentation.draw(seed: seed, epoch: epoch, index: index))
                }
                // Phase 2: forward, segment by segment between BatchNorm layers (one
                // segment without BatchNorm), then the top segment's forward, loss and
                // backward image by image, then the lower segments' backward.
                var segmentStart = 0
                for bn in batchNorms {
                  let offset = batchSumOffsets[bn]!
                  let width = 2 * plan.layers[bn].runningMean!.count
                  for shard in myShards {
                    let partial = batchInputSums + shard * batchSumStride + offset
                    partial.update(repeating: 0, count: width)
                    let positions = images(of: shard)
                    if segmentStart == 0 { positions.forEach(load) }
                    replica.forward(
                      layers: segmentStart..<bn, slots: imageSlots(of: shard),
                      pass: pass(position: positions.lowerBound), addingInputSumsOf: bn, state: runningState,
                      into: partial)
                  }
                  charge(0)
                  pool.barrier.wait()
                  if let exchange {  // every rank gets every shard's sums
                    charge(1)
                    if worker == 0 { exchange.shareShardRows(batchInputSums, stride: batchSumStride, shards: shards) }
                    charge(5)
                    pool.barrier.wait()
                  }
                  sums.update(repeating: 0, count: width)
                  for shard in 0..<shards {
                    let partial = batchInputSums + shard * batchSumStride + offset
                    for k in 0..<width { sums[k] += partial[k] }
                  }
                  let (pixelsPerImage, _) = replica.batchNormGeometry(plan.layers[bn])
                  replica.setBatchStatistics(
                    layer: bn, sums: sums, count: count * pixelsPerImage, parameters: params, state: runningState)
                  charge(4)
                  segmentStart = bn
                }
                let belowTop = batchNorms.last
                for shard in myShards {
                  let slot = slotBases[shard]
                  for range in topCleared { (slot + range.lowerBound).update(repeating: 0, count: range.count) }
                  var loss: Float = 0
                  var correct = 0
                  replica.beginShard(layers: topLayers, overwritingDense: true)
                  if let bn = belowTop {
                    (batchGradientSums + shard * batchSumStride + batchSumOffsets[bn]!).update(
                      repeating: 0, count: 2 * plan.layers[bn].runningMean!.count)
                  }
                  let positions = images(of: shard)
                  let shardPass = pass(position: positions.lowerBound)
                  if segmentStart == 0 { positions.forEach(load) }
                  replica.forward(layers: segmentStart..<layerCount, slots: imageSlots(of: shard), pass: shardPass)
                  for position in positions {
                    let label = Int(labels[Int(order[first + position])])
                    let logits = replica.logits(slot: slotIndex(position))
                    if argmax(logits.baseAddress!, count: logits.count) == label { correct += 1 }
                    loss += replica.loss(label: label, slot: slotIndex(position))
                  }
                  replica.backward(
                    layers: topLayers, slots: imageSlots(of: shard), pass: shardPass, gradient: slot,
                    finishingShard: true,
                    addingGradientSumsOf: belowTop.flatMap { bn in
                      replica.trains[bn] || replica.needsInputGradient[bn]
                        ? (bn, batchGradientSums + shard * batchSumStride + batchSumOffsets[bn]!) : nil
                    })
                  replica.finishShard(layers: topLayers, gradient: slot)
                  stats[shard * statsStride] = loss
                  stats[shard * statsStride + 1] = Float(correct)
                  Self.foldLocalPairs(
                    after: shard, block: myShards, shards: shards, slots: slotBases, ranges: topTrainable)
                }
                // The lower segments' backward, from the top BatchNorm down.
                for (level, bn) in batchNorms.enumerated().reversed() {
                  guard replica.trains[bn] || replica.needsInputGradient[bn] else { break }
                  let layer = plan.layers[bn]
                  let channels = layer.runningMean!.count
                  let offset = batchSumOffsets[bn]!
                  if replica.needsInputGradient[bn] {
                    charge(0)
                    pool.barrier.wait()
                    if let exchange {
                      charge(1)
                      if worker == 0 {
                        exchange.shareShardRows(batchGradientSums, stride: batchSumStride, shards: shards)
                      }
                      charge(5)
                      pool.barrier.wait()
                    }
                    gradientSums.update(repeating: 0, count: 2 * channels)
                    for shard in 0..<shards {
                      let partial = batchGradientSums + shard * batchSumStride + offset
                      for k in 0..<(2 * channels) { gradientSums[k] += partial[k] }
                    }
                    let (pixelsPerImage, _) = replica.batchNormGeometry(layer)
                    replica.setBatchGradientSums(layer: bn, sums: gradientSums, count: count * pixelsPerImage)
                    charge(4)
                  }
                  let lowerLayers = levelLayers[level]
                  let next = level > 0 ? batchNorms[level - 1] : nil
                  for shard in myShards {
                    let slot = slotBases[shard]
                    for range in levelCleared[level] {
                      (slot + range.lowerBound).update(repeating: 0, count: range.count)
                    }
                    if replica.trains[bn] {  // γ's and β's gradients are the shard's own sums
                      let partial = batchGradientSums + shard * batchSumStride + offset
                      for c in 0..<channels {
                        slot[layer.weight!.offset + c] += partial[channels + c]
                        slot[layer.bias!.offset + c] += partial[c]
                      }
                    }
                    if replica.needsInputGradient[bn] {
                      replica.beginShard(layers: lowerLayers, overwritingDense: true)
                      if let next {
                        (batchGradientSums + shard * batchSumStride + batchSumOffsets[next]!).update(
                          repeating: 0, count: 2 * plan.layers[next].runningMean!.count)
                      }
                      let positions = images(of: shard)
                      replica.backward(
                        layers: lowerLayers, slots: imageSlots(of: shard),
                        pass: pass(position: positions.lowerBound), gradient: slot, finishingShard: true,
                        addingGradientSumsOf: next.flatMap { next in
                          replica.trains[next] || replica.needsInputGradient[next]
                            ? (next, batchGradientSums + shard * batchSumStride + batchSumOffsets[next]!) : nil
                        })
                      replica.finishShard(layers: lowerLayers, gradient: slot)
                    }
                    Self.foldLocalPairs(
                      after: shard, block: myShards, shards: shards, slots: slotBases, ranges: levelTrainable[level])
                  }
                  guard replica.needsInputGradient[bn] else { break }
                }
                charge(0)
                pool.barrier.wait()
                charge(1)
                if flags[0] != 0 { break }  // a stop was requested after the last step
                if let exchange {  // the shards' losses, and the slots the other ranks' slices need
                  for range in localRanges[worker] {
                    Self.reducePairsInsideRank(
                      rank, ranks: ranks, slotBases, shards: shards, blocks: blocks, range: range)
                  }
                  charge(2)
                  pool.barrier.wait()
                  charge(1)
                  if worker == 0 {
                    exchange.shareShardRows(stats, stride: statsStride, shards: shards)
                    exchange.shareGradients(slotBases, shards: shards)
                  }
                  charge(5)
                  pool.barrier.wait()
                  charge(1)
                }
                // Phase 3: reduce this worker's slice and check that it is finite.
                var firstNonFinite = -1
                for range in myRanges {
                  Self.reduceCrossWorkerPairs(slotBases, shards: shards, workers: reduceBlocks, range: range)
                  if firstNonFinite < 0, let bad = PTrain.firstNonFinite(in: slotBases[0], range) {
                    firstNonFinite = bad
                  }
                }
                flags[(worker + 1) * flagStride] = firstNonFinite
                charge(2)
                pool.barrier.wait()
                charge(1)
                // Phase 4: every worker reaches the same verdict, then updates its slice.
                var badGradient = (1...workers).lazy.map { flags[$0 * flagStride] }.first { $0 >= 0 }
                if let exchange {  // the first non-finite gradient of any rank, in rank order
                  if worker == 0 { flags[(workers + 1) * flagStride] = exchange.firstOfRanks(badGradient ?? -1) }
                  charge(1)
                  pool.barrier.wait()
                  charge(5)
                  let first = flags[(workers + 1) * flagStride]
                  badGradient = first >= 0 ? first : nil
                }
                let badLoss = (0..<shards).lazy.map { stats[$0 * statsStride] }.first { !$0.isFinite }
                if badGradient != nil || badLoss != nil {
                  if worker == 0 { recordFailure(step: step, gradientIndex: badGradient, loss: badLoss) }
                  break
                }
                if worker == 0, let observeGradient {
                  observeGradient(UnsafeBufferPointer(start: slotBases[0], count: plan.parameterCount), count)
                }
                for range in myRanges {
                  optimizer.update(range, parameters: params, gradient: slotBases[0], gradientScale: 1 / Float(count))
                }
                if worker == 0 { updateRunningStatistics(from: replica) }
                charge(3)
                pool.barrier.wait()
                charge(1)
                if let exchange {  // every rank gets every slice of the updated parameters
                  if worker == 0 { exchange.shareUpdatedSlices() }
                  charge(5)
                  pool.barrier.wait()
                  charge(1)
                }
                if worker == 0 {
                  for shard in 0..<shards {
                    epochLoss += Double(stats[shard * statsStride])
                    epochCorrect += Int(stats[shard * statsStride + 1])
                  }
                  optimizer.finishStep()
                  stepsIntoEpoch = step + 1
                  onEvent(
                    .step(
                      StepProgress(
                        epoch: epochsCompleted + 1, epochs: target, step: step + 1, stepsPerEpoch: steps,
                        images: first + count, loss: epochLoss / Double(first + count),
                        accuracy: Double(epochCorrect) / Double(first + count),
                        seconds: (clock.now - start).seconds)))
                  flags[0] = stopFlag.load(ordering: .relaxed) ? 1 : 0
                  charge(0)
                  if let exchange {  // all ranks stop after the same step
                    flags[0] = exchange.processes.maximum(flags[0])
                    charge(5)
                  }
                }
              }
            }
          }
        }
      }
    }
    var segmentStart = firstStep
    while segmentStart < steps && flags[0] == 0 && failure == nil {
      let segmentEnd = min(segmentStart + segmentSteps, steps)
      let firstStaged = segmentStart * batch
      if inMemory == nil {
        let readStart = clock.now
        try staged.withUnsafeMutableBufferPointer { staged in
          try data.copyImages(order[firstStaged..<min(segmentEnd * batch, data.count)], into: staged.baseAddress!)
        }
        profile.data += (clock.now - readStart).seconds
      }
      trainSegment(inMemory ?? staged, steps: segmentStart..<segmentEnd, firstStaged: firstStaged)
      segmentStart = segmentEnd
    }
    return stepsIntoEpoch == steps
  }

  /// Moves every BatchNorm's running statistics towards this step's batch statistics,
  /// as PyTorch does: `running = (1 − momentum) · running + momentum · batch`, with the
  /// unbiased variance. Cost: O(channels).
  private func updateRunningStatistics(from replica: Replica) {
    guard !plan.batchNormLayers.isEmpty else { return }
    let momentum = ModelPlan.batchNormMomentum
    for index in plan.batchNormLayers {
      let layer = plan.layers[index]
      let (mean, variance) = replica.batchStatistics(layer: index)
      for c in 0..<layer.runningMean!.count {
        let m = runningStatistics.base + layer.runningMean!.offset + c
        let v = runningStatistics.base + layer.runningVariance!.offset + c
        m.pointee = (1 - momentum) * m.pointee + momentum * mean[c]
        v.pointee = (1 - momentum) * v.pointee + momentum * variance[c]
      }
    }
    batchesTracked += 1
  }

  /// Records why training stopped at `step`: the tensor of the first non-finite
  /// gradient and the non-finite loss, whichever were seen.
  private func recordFailure(step: Int, gradientIndex: Int?, loss: Float?) {
    var what: [String] = []
    if let loss { what.append("loss (\(loss))") }
    if let gradientIndex, let tensor = plan.tensor(containing: gradientIndex) {
      what.append("gradient in layer \(plan.layers[tensor.layer].name) (\(tensor.name))")
    }
    failure = PTrainError(
      "non-finite \(what.joined(separator: " and ")) at epoch \(epochsCompleted + 1), step \(step + 1) (global step \(optimizer.step + 1)); stopped before applying it, so the parameters are those of the step before"
    )
  }

  // The shard gradients are summed in one fixed pairwise tree over shard indices: at
  // stride 1, slot 0 += slot 1, slot 2 += slot 3, …; at stride 2, slot 0 += slot 2, …;
  // until slot 0 holds the sum. Each worker computes one contiguous block of shards, so
  // every pair whose subtree lies inside a block is added by that worker as soon as its
  // last shard is done, while the slots are still in its cache; the reduce phase adds the
  // pairs that span blocks. Every pair adds the same operands in the same order whoever
  // adds it and whenever, so the sum's bits depend only on the shard count.

  /// Which of the `slots` each shard's gradient uses in a step of `shards` shards cut
  /// into `blocks` blocks (`evenShare`), of which `localBlocks` run here. A local block's
  /// shards take turns in the block's first slots: a shard takes the lowest slot that no
  /// unfinished sum holds, and frees its partner's when `foldLocalPairs` adds it, so a
  /// block of n shards touches O(log n) slots (⌊log₂ n⌋ + 1 when it starts a subtree of
  /// the tree), and their sums stay in cache.
  /// Other ranks' shards keep their own slots, where `RankExchange` puts their sums. Every
  /// shard's sum is added in the same pairs as before, so the bits do not change.
  /// Cost: O(shards · log shards).
  package static func gradientSlotIndices(shards: Int, blocks: Int, localBlocks: Range<Int>) -> [Int] {
    var indices = Array(0..<shards)
    for part in localBlocks {
      let block = evenShare(of: shards, part: part, parts: blocks)
      var taken = [Bool](repeating: false, count: block.count)
      for shard in block {
        let turn = taken.firstIndex(of: false)!
        taken[turn] = true
        indices[shard] = block.lowerBound + turn
        forEachLocalPair(after: shard, block: block, shards: shards) { _, right in
          taken[indices[right] - block.lowerBound] = false
        }
      }
    }
    return indices
  }

  /// Calls `body(left, right)` for every tree pair whose subtree ends with shard `shard`
  /// and lies inside `block`, lowest level first: the pairs `foldLocalPairs` adds.
  package static func forEachLocalPair(
    after shard: Int, block: Range<Int>, shards: Int, _ body: (_ left: Int, _ right: Int) -> Void
  ) {
    var stride = 1
    while stride < shards {
      let left = shard / (2 * stride) * (2 * stride)
      guard shard + 1 == min(left + 2 * stride, shards), left >= block.lowerBound else { return }
      if left + stride < shards { body(left, left + stride) }
      stride *= 2
    }
  }

  /// The worker whose block (`evenShare`) holds shard `shard`.
  package static func owner(ofShard shard: Int, workers: Int, shards: Int) -> Int {
    ((shard + 1) * workers - 1) / shards
  }

  /// After shard `shard` of `block` is done, adds every tree pair whose subtree ends with
  /// that shard and lies inside the block, over `ranges` of the slots.
  /// Cost: O(parameters) per pair added.
  package static func foldLocalPairs(
    after shard: Int, block: Range<Int>, shards: Int, slots: [UnsafeMutablePointer<Float>], ranges: [Range<Int>]
  ) {
    forEachLocalPair(after: shard, block: block, shards: shards) { left, right in
      for range in ranges {
        addInPlace(slots[left] + range.lowerBound, slots[right] + range.lowerBound, count: range.count)
      }
    }
  }

  /// Calls `body(left, right, last)` for every pair of the tree, level by level, in the
  /// order they must be added: `slot[left] += slot[right]`, where `left ... last` are the
  /// shards of the pair's subtree. Cost: O(shards) calls.
  package static func forEachTreePair(shards: Int, _ body: (_ left: Int, _ right: Int, _ last: Int) -> Void) {
    var stride = 1
    while stride < shards {
      for left in Swift.stride(from: 0, to: shards - stride, by: 2 * stride) {
        body(left, left + stride, min(left + 2 * stride, shards) - 1)
      }
      stride *= 2
    }
  }

  /// Adds, over `range`, the tree pairs whose subtrees span two workers' blocks, level by
  /// level, leaving the whole sum in slot 0. Cost: O(range.count) per pair.
  package static func reduceCrossWorkerPairs(
    _ slots: [UnsafeMutablePointer<Float>], shards: Int, workers: Int, range: Range<Int>
  ) {
    forEachTreePair(shards: shards) { left, right, last in
      // A pair inside one block was added by that worker during compute.
      guard
        owner(ofShard: left, workers: workers, shards: shards) != owner(ofShard: last, workers: workers, shards: shards)
      else { return }
      addInPlace(slots[left] + range.lowerBound, slots[right] + range.lowerBound, count: range.count)
    }
  }

  /// Adds, over `range`, the tree pairs whose subtrees lie inside rank `rank`'s block (of
  /// `ranks`) but span two of the `blocks` worker blocks, level by level. Under MPI these
  /// are added before the ranks exchange partial sums, so that each rank sends one per
  /// subtree of its block. Cost: O(range.count) per pair.
  package static func reducePairsInsideRank(
    _ rank: Int, ranks: Int, _ slots: [UnsafeMutablePointer<Float>], shards: Int, blocks: Int, range: Range<Int>
  ) {
    forEachTreePair(shards: shards) { left, right, last in
      guard owner(ofShard: left, workers: ranks, shards: shards) == rank,
        owner(ofShard: last, workers: ranks, shards: shards) == rank,
        owner(ofShard: left, workers: blocks, shards: shards) != owner(ofShard: last, workers: blocks, shards: shards)
      else { return }
      addInPlace(slots[left] + range.lowerBound, slots[right] + range.lowerBound, count: range.count)
    }
  }

  /// Loss, accuracy, per-class metrics and confusion matrix on `data`, computed in
  /// parallel with the BatchNorm running statistics and without dropout; the result does
  /// not depend on the thread count. The images are read (from their files, or copied
  /// from memory) a chunk of `stagedBytes` at a time, one fan-out each; a file that has
  /// changed throws. Cost: the forward FLOP per image.
  public func evaluate(_ data: LabeledImages) throws -> Evaluation {
    var losses = [Float](repeating: 0, count: data.count)
    var predictions = [Int](repeating: 0, count: data.count)
    let imageBytes = data.shape.count
    let chunk = max(1, stagedBytes / imageBytes)
    var staged = [UInt8](repeating: 0, count: min(chunk, data.count) * imageBytes)
    for start in stride(from: 0, to: data.count, by: chunk) {
      let images = start..<min(start + chunk, data.count)
      try staged.withUnsafeMutableBufferPointer { try data.copyImages(images, into: $0.baseAddress!) }
      evaluate(data, images: images, bytes: staged, losses: &losses, predictions: &predictions)
    }
    return Evaluation(losses: losses, predictions: predictions, labels: data.labels, classCount: plan.classes)
  }

  /// Evaluates `data`'s images at `images`, whose bytes start `bytes`, into their
  /// elements of `losses` and `predictions`, in one fan-out. Cost: the forward FLOP per
  /// image.
  private func evaluate(
    _ data: LabeledImages, images: Range<Int>, bytes: [UInt8], losses: inout [Float], predictions: inout [Int]
  ) {
    let block = 64
    let workers = pool.count
    nonisolated(unsafe) let params = parameters.base
    nonisolated(unsafe) let runningState = UnsafePointer(runningStatistics.base)
    let imageBytes = data.shape.count
    bytes.withUnsafeBufferPointer { pixels in
      losses.withUnsafeMutableBufferPointer { losses in
        predictions.withUnsafeMutableBufferPointer { predictions in
          // Parameters and images are only read; each image's loss and prediction are
          // written by the one worker that evaluates it.
          nonisolated(unsafe) let (pixels, losses, predictions) = (pixels, losses, predictions)
          pool.run { worker in
            let replica = replicas[worker]
            prepared.update(from: params, part: worker, of: workers)
            pool.barrier.wait()
            for blockStart in stride(from: worker * block, to: images.count, by: workers * block) {
              for offset in blockStart..<min(blockStart + block, images.count) {
                let index = images.lowerBound + offset
                let result = replica.evaluate(
                  image: pixels.baseAddress! + offset * imageBytes, label: Int(data.labels[index]), parameters: params,
                  state: runningState)
                losses[index] = result.loss
                predictions[index] = result.prediction
              }
            }
          }
        }
      }
    }
  }
}

extension Duration {
  /// The duration in seconds.
  var seconds: Double {
    let (s, attoseconds) = components
    return Double(s) + Double(attoseconds) * 1e-18
  }
}
