import Synchronization

/// Data-parallel training of the MNIST CNN on pinned workers.
///
/// Each step first fills conv2's shared Winograd filters, each worker a slice of the
/// input channels. After a barrier it cuts the batch into shards of `options.shardSize`
/// images; worker `w` computes one contiguous block of shards, each into its own
/// gradient slot, and adds the pairs of the fixed reduction tree that lie inside its
/// block. After a second barrier every worker adds, over one contiguous slice of the
/// trainable parameters, the tree pairs that span blocks, and checks the sum for
/// non-finite values. After a third barrier,
/// if every shard's loss and every gradient is finite, each worker applies Adam to its
/// slice; otherwise all stop before changing anything. Which worker computes which
/// shard never changes a bit of the result, so any thread count gives the same
/// parameters for the same seed.
///
/// A whole epoch runs inside one `WorkerPool.run`; each step costs four barriers.
/// The trainer remembers where it is (epoch, step, generator), so `state()` can be
/// saved and `init(resuming:)` continues bit for bit.
public final class Trainer {
  public let spec: ModelSpec
  public private(set) var options: TrainingOptions
  public let pool: WorkerPool
  /// The parameters, laid out as `spec` documents.
  public let parameters: AlignedFloats
  public let optimizer: Adam
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
  /// conv2's transformed filters, shared by the replicas and filled by all workers.
  private let conv2Filters: WinogradFilters
  private var slots: [AlignedFloats] = []
  /// Per-shard loss sums and correct counts, one cache line per shard.
  private let shardStats: AlignedFloats
  private static let statsStride = 16
  /// Per-worker phase nanoseconds, one cache line per worker: compute, barrier, reduce,
  /// optimizer.
  private let phaseNanoseconds: UnsafeMutablePointer<UInt64>
  private static let phaseStride = 8
  /// Decisions shared at barriers, one cache line each: line 0 holds "stop before the
  /// next step", written by worker 0 after each step; line `w + 1` the first non-finite gradient index worker `w` found, or -1.
  private let flags: UnsafeMutablePointer<Int>
  private static let flagStride = 8
  /// Time per phase over every `train` call so far, averaged over the workers.
  public private(set) var profile = PhaseProfile()

  /// Creates the workers, their replicas and gradient slots, and draws the initial
  /// parameters from `options.seed`. Cost: thread start-up plus O(parameters · shards).
  public init(options: TrainingOptions, spec: ModelSpec = ModelSpec(), topology: Topology? = nil) throws {
    try options.validate()
    self.options = options
    self.spec = spec
    pool = try WorkerPool(topology: topology ?? Topology(), threads: options.threads)
    var generator = SeededGenerator(seed: options.seed)
    parameters = AlignedFloats(count: spec.parameterCount)
    parameters.copy(from: spec.initialParameters(using: &generator))
    epochGenerator = generator
    optimizer = Adam(parameterCount: spec.parameterCount, learningRate: options.learningRate)
    let shards = options.shardsPerBatch
    shardStats = AlignedFloats(count: shards * Self.statsStride)
    phaseNanoseconds = .allocate(capacity: pool.count * Self.phaseStride)
    phaseNanoseconds.initialize(repeating: 0, count: pool.count * Self.phaseStride)
    flags = .allocate(capacity: (pool.count + 1) * Self.flagStride)
    flags.initialize(repeating: 0, count: (pool.count + 1) * Self.flagStride)
    let filters = WinogradFilters(shape: spec.conv2, keepsFlipped: !options.frozen.contains(.conv1))
    conv2Filters = filters
    var replicas = [Replica?](repeating: nil, count: pool.count)
    var slots = [AlignedFloats?](repeating: nil, count: shards)
    let workers = pool.count
    replicas.withUnsafeMutableBufferPointer { replicaSlots in
      slots.withUnsafeMutableBufferPointer { gradientSlots in
        pool.run { worker in  // first touch on the worker's own NUMA node
          replicaSlots[worker] = Replica(spec: spec, frozen: options.frozen, filters: filters)
          for shard in evenShare(of: shards, part: worker, parts: workers) {
            gradientSlots[shard] = AlignedFloats(count: spec.parameterCount)
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
    resuming state: TrainingState, threads: Int, epochs: Int? = nil, topology: Topology? = nil
  ) throws {
    var options = state.options
    options.threads = threads
    if let epochs { options.epochs = epochs }
    try self.init(options: options, spec: state.spec, topology: topology)
    parameters.copy(from: state.parameters)
    optimizer.restore(step: state.adamStep, firstMoment: state.firstMoment, secondMoment: state.secondMoment)
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
  }

  /// A copy of the parameters.
  public var parameterValues: [Float] { parameters.array }

  /// SHA-256 of the parameters' little-endian bytes in layout order.
  public var parametersSHA256: String {
    SHA256.hex(UnsafeRawBufferPointer(start: parameters.base, count: parameters.count * 4))
  }

  /// Overwrites the parameters of `layers` with theirs in `values`, a parameter buffer
  /// laid out for `source` (which may differ from `spec` in its head only), for starting
  /// from pre-trained weights. Call between `train` calls. Cost: O(parameters).
  public func loadParameters(_ values: [Float], from source: ModelSpec, layers: Set<ModelSpec.Layer>) {
    precondition(values.count == source.parameterCount, "expected \(source.parameterCount) parameters")
    for layer in layers {
      let from = source.parameterRange(of: layer)
      let to = spec.parameterRange(of: layer)
      precondition(from.count == to.count, "layer \(layer) differs between the models")
      for (target, origin) in zip(to, from) { parameters.base[target] = values[origin] }
    }
  }

  /// Everything needed to continue this run later. Safe to call between `train` calls
  /// and from a `.step` event handler. Cost: O(parameters).
  public func state() -> TrainingState {
    TrainingState(
      spec: spec, options: options, parameters: parameters.array, firstMoment: optimizer.firstMoment.array,
      secondMoment: optimizer.secondMoment.array, adamStep: optimizer.step, epochsCompleted: epochsCompleted,
      stepsIntoEpoch: stepsIntoEpoch, epochGenerator: epochGenerator, epochLoss: epochLoss,
      epochCorrect: epochCorrect, dataFingerprint: dataFingerprint)
  }

  /// Asks a running `train` to stop once the step in progress has been applied; from a
  /// `.step` event handler, before the next step. The work the other workers have begun
  /// on that next step is discarded. Safe from any thread (a signal handler should go
  /// through a dispatch source).
  public func requestStop() { stopFlag.store(true, ordering: .relaxed) }

  /// Trains over `data` until `untilEpoch` (by default `options.epochs`) epochs are
  /// complete, continuing from the current position, and evaluates on `test` after each finished epoch when given.
  /// `onEvent` runs on a worker thread after every step and on the calling thread after
  /// every epoch; keep it short.
  ///
  /// Returns early, with `stopped` set, when `requestStop()` was called. Throws, leaving
  /// the parameters as they were before the offending step, when a loss or gradient is
  /// not finite, or when resuming mid-epoch on different data.
  /// Cost: ≈ 8.8 MFLOP per image per epoch (14.26 MFLOP of direct convolution).
  @discardableResult
  public func train(
    _ data: LabeledImages, evaluatingOn test: LabeledImages? = nil, untilEpoch: Int? = nil,
    onEvent: (TrainingEvent) -> Void = { _ in }
  ) throws -> TrainingSummary {
    let target = untilEpoch ?? options.epochs
    let fingerprint = data.fingerprint
    if stepsIntoEpoch > 0 && fingerprint != dataFingerprint {
      throw PTrainError(
        "cannot continue mid-epoch on different data: the run was on \(dataFingerprint), this is \(fingerprint)")
    }
    guard data.count > 0 else { throw PTrainError("no training images") }
    let stepsPerEpoch = (data.count + options.batchSize - 1) / options.batchSize
    guard stepsIntoEpoch <= stepsPerEpoch else {
      throw PTrainError(
        "cannot continue after step \(stepsIntoEpoch) of an epoch that has \(stepsPerEpoch) steps on this data")
    }
    try LabeledImages.requireLabels(data.labels, below: spec.classes, name: "training data")
    if let test { try LabeledImages.requireLabels(test.labels, below: spec.classes, name: "test data") }
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
      let finishedEpoch = trainEpoch(data, order: order, target: target, onEvent: onEvent)
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
        imagesPerSecond: Double(data.count - firstStep * options.batchSize) / seconds, test: test.map(evaluate))
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
      for phase in 0..<4 { times[phase] = 0 }
    }
  }

  /// The parameter ranges worker `worker` of `workers` reduces and updates: its share of
  /// the trainable layers' parameters, cut into slices of a multiple of 16.
  private func ranges(ofWorker worker: Int, workers: Int) -> [Range<Int>] {
    let trainable = ModelSpec.Layer.allCases.filter { !options.frozen.contains($0) }.map { spec.parameterRange(of: $0) }
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

  /// Runs the current epoch from step `stepsIntoEpoch` in one fan-out. Returns whether
  /// it reached the end; it stops early on `requestStop()` or a non-finite value.
  private func trainEpoch(
    _ data: LabeledImages, order: [Int32], target: Int, onEvent: (TrainingEvent) -> Void
  ) -> Bool {
    let batch = options.batchSize
    let shardSize = options.shardSize
    let workers = pool.count
    let steps = (data.count + batch - 1) / batch
    let firstStep = stepsIntoEpoch
    let parameterCount = spec.parameterCount
    let workerRanges = (0..<workers).map { ranges(ofWorker: $0, workers: workers) }
    let trainableRanges = ModelSpec.Layer.allCases.filter { !options.frozen.contains($0) }.map {
      spec.parameterRange(of: $0)
    }
    let filters = conv2Filters
    let conv2Weight = spec.conv2Weight
    let conv2Frozen = options.frozen.contains(.conv2)
    let params = parameters.base
    let slotBases = slots.map(\.base)
    let stats = shardStats.base
    let statsStride = Self.statsStride
    let flags = self.flags
    let flagStride = Self.flagStride
    flags[0] = 0
    let clock = ContinuousClock()
    let start = clock.now
    data.pixels.withUnsafeBufferPointer { pixels in
      data.labels.withUnsafeBufferPointer { labels in
        order.withUnsafeBufferPointer { order in
          pool.run { worker in
            let replica = replicas[worker]
            let myRanges = workerRanges[worker]
            let times = phaseNanoseconds + worker * Self.phaseStride
            var mark = monotonicNanoseconds()
            /// Adds the time since the last mark to `phase`.
            func charge(_ phase: Int) {
              let now = monotonicNanoseconds()
              times[phase] &+= now &- mark
              mark = now
            }
            for step in firstStep..<steps {
              let first = step * batch
              let count = min(batch, data.count - first)
              let shards = (count + shardSize - 1) / shardSize
              // Phase 1: conv2's transformed filters, a slice per worker; then shard
              // gradients, each into its own slot.
              // A frozen conv2 never changes, so its filters are filled once per fan-out.
              if !conv2Frozen || step == firstStep {
                filters.update(from: params + conv2Weight, part: worker, of: workers)
              }
              charge(0)
              pool.barrier.wait()
              charge(1)
              let myShards = evenShare(of: shards, part: worker, parts: workers)
              for shard in myShards {
                let slot = slotBases[shard]
                slot.update(repeating: 0, count: parameterCount)
                var loss: Float = 0
                var correct = 0
                let end = min((shard + 1) * shardSize, count)
                replica.beginShard()
                for position in (first + shard * shardSize)..<(first + end) {
                  let index = Int(order[position])
                  let logits = replica.forward(
                    image: pixels.baseAddress! + index * ModelSpec.imagePixels, parameters: params)
                  let label = Int(labels[index])
                  if argmax(logits.baseAddress!, count: logits.count) == label { correct += 1 }
                  loss += replica.backward(label: label, parameters: params, gradient: slot)
                }
                replica.endShard(gradient: slot)
                stats[shard * statsStride] = loss
                stats[shard * statsStride + 1] = Float(correct)
                Self.foldLocalPairs(
                  after: shard, block: myShards, shards: shards, slots: slotBases, ranges: trainableRanges)
              }
              charge(0)
              pool.barrier.wait()
              charge(1)
              if flags[0] != 0 { break }  // a stop was requested after the last step
              // Phase 2: reduce this worker's slice and check that it is finite.
              var firstNonFinite = -1
              for range in myRanges {
                Self.reduceCrossWorkerPairs(slotBases, shards: shards, workers: workers, range: range)
                if firstNonFinite < 0, let bad = range.first(where: { !slotBases[0][$0].isFinite }) {
                  firstNonFinite = bad
                }
              }
              flags[(worker + 1) * flagStride] = firstNonFinite
              charge(2)
              pool.barrier.wait()
              charge(1)
              // Phase 3: every worker reaches the same verdict, then updates its slice.
              let badGradient = (1...workers).lazy.map { flags[$0 * flagStride] }.first { $0 >= 0 }
              let badLoss = (0..<shards).lazy.map { stats[$0 * statsStride] }.first { !$0.isFinite }
              if badGradient != nil || badLoss != nil {
                if worker == 0 { recordFailure(step: step, gradientIndex: badGradient, loss: badLoss) }
                break
              }
              let alpha = optimizer.stepSizeForNext()
              for range in myRanges {
                optimizer.update(
                  range, parameters: params, gradient: slotBases[0], gradientScale: 1 / Float(count), stepSize: alpha)
              }
              charge(3)
              pool.barrier.wait()
              charge(1)
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
                      seconds: (clock.now - start).seconds)))
                flags[0] = stopFlag.load(ordering: .relaxed) ? 1 : 0
                charge(0)
              }
            }
          }
        }
      }
    }
    return stepsIntoEpoch == steps
  }

  /// Records why training stopped at `step`: the tensor of the first non-finite
  /// gradient and the non-finite loss, whichever were seen.
  private func recordFailure(step: Int, gradientIndex: Int?, loss: Float?) {
    var what: [String] = []
    if let loss { what.append("loss (\(loss))") }
    if let gradientIndex, let tensor = spec.tensor(containing: gradientIndex) {
      what.append("gradient in layer \(tensor.layer.rawValue) (\(spec.torchName(of: tensor)))")
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

  /// The worker whose block (`evenShare`) holds shard `shard`.
  static func owner(ofShard shard: Int, workers: Int, shards: Int) -> Int {
    ((shard + 1) * workers - 1) / shards
  }

  /// After shard `shard` of `block` is done, adds every tree pair whose subtree ends with
  /// that shard and lies inside the block, over `ranges` of the slots.
  /// Cost: O(parameters) per pair added.
  static func foldLocalPairs(
    after shard: Int, block: Range<Int>, shards: Int, slots: [UnsafeMutablePointer<Float>], ranges: [Range<Int>]
  ) {
    var stride = 1
    while stride < shards {
      let left = shard / (2 * stride) * (2 * stride)
      guard shard + 1 == min(left + 2 * stride, shards), left >= block.lowerBound else { return }
      if left + stride < shards {
        for range in ranges {
          addInPlace(slots[left] + range.lowerBound, slots[left + stride] + range.lowerBound, count: range.count)
        }
      }
      stride *= 2
    }
  }

  /// Adds, over `range`, the tree pairs whose subtrees span two workers' blocks, level by
  /// level, leaving the whole sum in slot 0. Cost: O(range.count) per pair.
  static func reduceCrossWorkerPairs(
    _ slots: [UnsafeMutablePointer<Float>], shards: Int, workers: Int, range: Range<Int>
  ) {
    var stride = 1
    while stride < shards {
      for left in Swift.stride(from: 0, to: shards - stride, by: 2 * stride) {
        let last = min(left + 2 * stride, shards) - 1
        if owner(ofShard: left, workers: workers, shards: shards)
          == owner(ofShard: last, workers: workers, shards: shards)
        {
          continue  // added by that worker during compute
        }
        addInPlace(slots[left] + range.lowerBound, slots[left + stride] + range.lowerBound, count: range.count)
      }
      stride *= 2
    }
  }

  /// Loss, accuracy, per-class metrics and confusion matrix on `data`, computed in
  /// parallel; the result does not depend on the thread count. Cost: ≈ 2.8 MFLOP/image.
  public func evaluate(_ data: LabeledImages) -> Evaluation {
    var losses = [Float](repeating: 0, count: data.count)
    var predictions = [Int](repeating: 0, count: data.count)
    let block = 64
    let workers = pool.count
    let params = parameters.base
    data.pixels.withUnsafeBufferPointer { pixels in
      losses.withUnsafeMutableBufferPointer { losses in
        predictions.withUnsafeMutableBufferPointer { predictions in
          pool.run { worker in
            let replica = replicas[worker]
            conv2Filters.update(from: params + spec.conv2Weight, part: worker, of: workers)
            pool.barrier.wait()
            for blockStart in stride(from: worker * block, to: data.count, by: workers * block) {
              for index in blockStart..<min(blockStart + block, data.count) {
                let result = replica.evaluate(
                  image: pixels.baseAddress! + index * ModelSpec.imagePixels,
                  label: Int(data.labels[index]), parameters: params)
                losses[index] = result.loss
                predictions[index] = result.prediction
              }
            }
          }
        }
      }
    }
    return Evaluation(losses: losses, predictions: predictions, labels: data.labels, classCount: spec.classes)
  }
}

extension Duration {
  /// The duration in seconds.
  var seconds: Double {
    let (s, attoseconds) = components
    return Double(s) + Double(attoseconds) * 1e-18
  }
}
