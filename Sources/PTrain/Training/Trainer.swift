/// Data-parallel training of the MNIST CNN on pinned workers.
///
/// Each step cuts the batch into shards of `options.shardSize` images. Worker `w`
/// computes shards `w, w + N, …`, each into its own gradient slot. After a barrier every
/// worker reduces one contiguous slice of the parameters across all slots in a fixed
/// pairwise tree, scales it by 1 / batch and applies Adam to that slice. Which worker
/// computes which shard never changes a bit of the result, so any thread count gives the
/// same parameters for the same seed.
///
/// A whole epoch runs inside one `WorkerPool.run`; steps are separated by two barriers.
public final class Trainer {
  public let spec: ModelSpec
  public let options: TrainingOptions
  public let pool: WorkerPool
  /// The parameters, laid out as `spec` documents.
  public let parameters: AlignedFloats
  public let optimizer: Adam
  /// The generator that drew the initial parameters and draws each epoch's shuffle.
  public private(set) var generator: SeededGenerator

  private var replicas: [Replica] = []
  private var slots: [AlignedFloats] = []
  private let slotStride: Int
  /// Per-shard loss sums and correct counts, one cache line per shard.
  private let shardStats: AlignedFloats
  private static let statsStride = 16
  /// Per-worker phase nanoseconds, one cache line per worker: compute, barrier, reduce,
  /// optimizer.
  private let phaseNanoseconds: UnsafeMutablePointer<UInt64>
  private static let phaseStride = 8
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
    self.generator = generator
    optimizer = Adam(parameterCount: spec.parameterCount, learningRate: options.learningRate)
    slotStride = roundUp(spec.parameterCount, toMultipleOf: 16)
    let shards = (options.batchSize + options.shardSize - 1) / options.shardSize
    shardStats = AlignedFloats(count: shards * Self.statsStride)
    phaseNanoseconds = .allocate(capacity: pool.count * Self.phaseStride)
    phaseNanoseconds.initialize(repeating: 0, count: pool.count * Self.phaseStride)
    var replicas = [Replica?](repeating: nil, count: pool.count)
    var slots = [AlignedFloats?](repeating: nil, count: shards)
    let workers = pool.count
    replicas.withUnsafeMutableBufferPointer { replicaSlots in
      slots.withUnsafeMutableBufferPointer { gradientSlots in
        pool.run { worker in  // first touch on the worker's own NUMA node
          replicaSlots[worker] = Replica(spec: spec)
          for shard in stride(from: worker, to: shards, by: workers) {
            gradientSlots[shard] = AlignedFloats(count: spec.parameterCount)
          }
        }
      }
    }
    self.replicas = replicas.map { $0! }
    self.slots = slots.map { $0! }
  }

  deinit { phaseNanoseconds.deallocate() }

  /// A copy of the parameters.
  public var parameterValues: [Float] { parameters.array }

  /// SHA-256 of the parameters' little-endian bytes in layout order.
  public var parametersSHA256: String {
    SHA256.hex(UnsafeRawBufferPointer(start: parameters.base, count: parameters.count * 4))
  }

  /// Trains for `options.epochs` epochs over `data`, evaluating on `test` after each one
  /// when given. `onEvent` runs on a worker thread after every step and on the calling
  /// thread after every epoch; keep it short. Cost: ≈ 14.25 MFLOP per image per epoch.
  public func train(
    _ data: LabeledImages, evaluatingOn test: LabeledImages? = nil,
    onEvent: (TrainingEvent) -> Void = { _ in }
  ) -> TrainingSummary {
    let clock = ContinuousClock()
    let runStart = clock.now
    var reports: [EpochReport] = []
    var trainSeconds = 0.0
    var order = (0..<data.count).map { Int32($0) }
    for epoch in 1...options.epochs {
      let shuffleStart = clock.now
      generator.shuffle(&order)
      profile.data += (clock.now - shuffleStart).seconds
      let epochStart = clock.now
      let (loss, correct) = trainEpoch(data, order: order, epoch: epoch, onEvent: onEvent)
      let seconds = (clock.now - epochStart).seconds
      trainSeconds += seconds
      let report = EpochReport(
        epoch: epoch, trainLoss: loss / Double(max(data.count, 1)),
        trainAccuracy: Double(correct) / Double(max(data.count, 1)), trainSeconds: seconds,
        imagesPerSecond: Double(data.count) / seconds, test: test.map(evaluate))
      reports.append(report)
      onEvent(.epochFinished(report))
    }
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
    return TrainingSummary(
      epochs: reports, imagesPerSecond: Double(data.count * options.epochs) / trainSeconds,
      seconds: (clock.now - runStart).seconds)
  }

  /// One epoch in one fan-out; returns the summed loss and the correct count.
  private func trainEpoch(
    _ data: LabeledImages, order: [Int32], epoch: Int, onEvent: (TrainingEvent) -> Void
  ) -> (Double, Int) {
    let batch = options.batchSize
    let shardSize = options.shardSize
    let workers = pool.count
    let steps = (data.count + batch - 1) / batch
    let parameterCount = spec.parameterCount
    let sliceLength = roundUp((parameterCount + workers - 1) / workers, toMultipleOf: 16)
    let params = parameters.base
    let slotBases = slots.map(\.base)
    let stats = shardStats.base
    let statsStride = Self.statsStride
    let clock = ContinuousClock()
    let start = clock.now
    var epochLoss = 0.0
    var epochCorrect = 0
    data.pixels.withUnsafeBufferPointer { pixels in
      data.labels.withUnsafeBufferPointer { labels in
        order.withUnsafeBufferPointer { order in
          pool.run { worker in
            let replica = replicas[worker]
            let times = phaseNanoseconds + worker * Self.phaseStride
            var mark = monotonicNanoseconds()
            /// Adds the time since the last mark to `phase`.
            func charge(_ phase: Int) {
              let now = monotonicNanoseconds()
              times[phase] &+= now &- mark
              mark = now
            }
            for step in 0..<steps {
              let first = step * batch
              let count = min(batch, data.count - first)
              let shards = (count + shardSize - 1) / shardSize
              // Phase 1: shard gradients, each into its own slot.
              if worker < shards { replica.prepareBackward(parameters: params) }
              for shard in stride(from: worker, to: shards, by: workers) {
                let slot = slotBases[shard]
                slot.update(repeating: 0, count: parameterCount)
                var loss: Float = 0
                var correct = 0
                let end = min((shard + 1) * shardSize, count)
                for position in (first + shard * shardSize)..<(first + end) {
                  let index = Int(order[position])
                  let logits = replica.forward(
                    image: pixels.baseAddress! + index * ModelSpec.imagePixels, parameters: params)
                  let label = Int(labels[index])
                  if argmax(logits.baseAddress!, count: logits.count) == label { correct += 1 }
                  loss += replica.backward(label: label, parameters: params, gradient: slot)
                }
                stats[shard * statsStride] = loss
                stats[shard * statsStride + 1] = Float(correct)
              }
              charge(0)
              pool.barrier.wait()
              charge(1)
              // Phase 2: reduce and update this worker's slice of the parameters.
              let alpha = optimizer.stepSizeForNext()
              let slice = min(worker * sliceLength, parameterCount)..<min((worker + 1) * sliceLength, parameterCount)
              if !slice.isEmpty {
                reduceSlots(slotBases, count: shards, range: slice)
                charge(2)
                optimizer.update(
                  slice, parameters: params, gradient: slotBases[0],
                  gradientScale: 1 / Float(count), stepSize: alpha)
              }
              if worker == 0 {
                for shard in 0..<shards {
                  epochLoss += Double(stats[shard * statsStride])
                  epochCorrect += Int(stats[shard * statsStride + 1])
                }
              }
              charge(3)
              pool.barrier.wait()
              charge(1)
              if worker == 0 {
                optimizer.finishStep()
                onEvent(
                  .step(
                    StepProgress(
                      epoch: epoch, epochs: options.epochs, step: step + 1, stepsPerEpoch: steps,
                      images: first + count, loss: epochLoss / Double(first + count),
                      seconds: (clock.now - start).seconds)))
                charge(0)
              }
            }
          }
        }
      }
    }
    return (epochLoss, epochCorrect)
  }

  /// Sums `slots[0..<count][range]` into `slots[0][range]` in a fixed pairwise tree:
  /// (0+1), (2+3), … then (0+2), (4+6), … The tree depends only on `count`.
  /// Cost: (count - 1) · range.count adds.
  private func reduceSlots(_ slots: [UnsafeMutablePointer<Float>], count: Int, range: Range<Int>) {
    var stride = 1
    while stride < count {
      for left in Swift.stride(from: 0, to: count - stride, by: 2 * stride) {
        addInPlace(slots[left] + range.lowerBound, slots[left + stride] + range.lowerBound, count: range.count)
      }
      stride *= 2
    }
  }

  /// Loss, accuracy, per-class metrics and confusion matrix on `data`, computed in
  /// parallel; the result does not depend on the thread count. Cost: ≈ 4.9 MFLOP/image.
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
