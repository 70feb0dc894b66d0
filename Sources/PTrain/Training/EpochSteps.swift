/// What every step of an epoch shares, worked out once before the workers fan out: how a
/// step's shards, BatchNorm segments and parameter slices are cut, and the buffers the
/// workers share. Plain values and pointers, so that a step copies nothing
/// reference-counted.
///
/// `@unchecked Sendable`: the workers share the pointed-to buffers under the step
/// protocol (see `Trainer`): between two barriers each element is written by at most one
/// worker and read by no other.
struct EpochSteps: @unchecked Sendable {
  let batch: Int, shardSize: Int, workers: Int
  /// The epoch's steps, and its number (epochs finished before it).
  let steps: Int, epoch: Int
  /// The images of the epoch and the bytes of one.
  let images: Int, imageBytes: Int
  /// With several processes, the step's shards are cut into `ranks` × `workers` blocks,
  /// rank after rank, and so are the parameters the workers reduce and update.
  let ranks: Int, rank: Int, blocks: Int
  /// Per worker of this rank: the parameter ranges it reduces and updates.
  let workerRanges: [[Range<Int>]]
  /// Per worker: `workerRanges` cut where the weight decay changes, with the decay of each.
  let workerUpdates: [[(range: Range<Int>, weightDecay: Float)]]
  /// Per worker: its share of all the parameters, where under MPI it adds the tree pairs
  /// inside this rank's block that span its workers' blocks before the ranks exchange.
  let localRanges: [[Range<Int>]]
  /// The blocks the reduce phase's cross-block pairs are counted over.
  let reduceBlocks: Int
  let exchange: RankExchange?
  let frozen: Set<Int>
  let layerCount: Int
  let batchNorms: [Int]
  /// The backward runs segment by segment: the top one (above the last BatchNorm), then
  /// from each BatchNorm down to the one below (`levelLayers`).
  let topLayers: Range<Int>
  let levelLayers: [Range<Int>]
  /// Per segment: the parameter ranges that a shard's backward adds to in its slot, cleared
  /// before and folded into the reduction tree after. A trainable dense layer's weight
  /// gradient is written per block of shards, straight into the tree's sums
  /// (`Replica.finishDenseBlock`), so only its bias is among them.
  let topPerShard: [Range<Int>]
  let levelPerShard: [[Range<Int>]]
  /// Per level: whether its backward has work (a layer that trains or passes a gradient
  /// down, or the sums of the BatchNorm below it to add), and whether it or a level below
  /// has any (its BatchNorm's γ and β included). In a sequential model a level without work
  /// has none below it; in a residual one a shortcut's BatchNorm may read the image while
  /// the body's layers below it train.
  let levelRunsBackward: [Bool], workAtOrBelow: [Bool]
  let seed: UInt64
  let augmentation: Augmentation
  let parameters: UnsafeMutablePointer<Float>
  let runningState: UnsafeMutablePointer<Float>
  let observeGradient: ((UnsafeBufferPointer<Float>, Int) -> Void)?
  /// The gradient slots each shard uses: in a full batch, and in the epoch's last batch.
  let fullBatchSlots: [UnsafeMutablePointer<Float>], lastBatchSlots: [UnsafeMutablePointer<Float>]
  /// When the epoch started, for the step events' seconds.
  let start: ContinuousClock.Instant
  /// The step events' target epoch.
  let target: Int

  /// The steps of `trainer`'s current epoch on `images` images, toward epoch `target`.
  /// Cost: O(layers + shards · log shards).
  init(trainer: Trainer, images: Int, imageBytes: Int, target: Int) {
    let options = trainer.options
    let plan = trainer.plan
    batch = options.batchSize
    shardSize = options.shardSize
    workers = trainer.pool.count
    steps = (images + batch - 1) / batch
    epoch = trainer.epochsCompleted
    self.images = images
    self.imageBytes = imageBytes
    ranks = trainer.processes.size
    rank = trainer.processes.rank
    blocks = ranks * workers
    let (rank, workers, blocks) = (rank, workers, blocks)
    workerRanges = (0..<workers).map { trainer.ranges(ofWorker: rank * workers + $0, workers: blocks) }
    localRanges = (0..<workers).map { trainer.ranges(ofWorker: $0, workers: workers) }
    workerUpdates = workerRanges.map { ranges in
      ranges.flatMap { options.optimizer.weightDecays(in: $0, tensors: plan.tensors) }
    }
    reduceBlocks = ranks > 1 ? ranks : workers
    exchange = ranks > 1 ? RankExchange(trainer: trainer, blocks: blocks) : nil
    frozen = options.frozen
    layerCount = plan.layers.count
    let batchNorms = plan.batchNormLayers
    self.batchNorms = batchNorms
    topLayers = (batchNorms.last.map { $0 + 1 } ?? 0)..<layerCount
    levelLayers = batchNorms.indices.map { level in
      (level > 0 ? batchNorms[level - 1] + 1 : 0)..<(batchNorms[level] + 1)
    }
    let trainableLayers = plan.parameterLayers.filter { !options.frozen.contains($0.index) }
    func perShard(_ layers: Range<Int>) -> [Range<Int>] {
      trainableLayers.filter { layers.contains($0.index) }.flatMap { layer in
        layer.kernel == .gemv ? [layer.bias?.range].compactMap { $0 } : [layer.parameterRange]
      }
    }
    topPerShard = perShard(topLayers)
    levelPerShard = levelLayers.map(perShard)
    let needsInputGradient = plan.inputGradients(frozen: options.frozen)
    let trains = plan.layers.map { $0.hasParameters && !options.frozen.contains($0.index) }
    let levels = levelLayers
    let levelRunsBackward = levels.indices.map { level in
      let below = level > 0 ? batchNorms[level - 1] : nil
      return levels[level].contains { needsInputGradient[$0] || (trains[$0] && $0 != batchNorms[level]) }
        || below.map { trains[$0] || needsInputGradient[$0] } ?? false
    }
    self.levelRunsBackward = levelRunsBackward
    var work = false
    workAtOrBelow = batchNorms.indices.map { level in
      work = work || levelRunsBackward[level] || trains[batchNorms[level]]
      return work
    }
    seed = options.seed
    augmentation = options.augmentation
    parameters = trainer.parameters.base
    runningState = trainer.runningStatistics.base
    observeGradient = trainer.observeGradient
    let slotBases = trainer.slots.map(\.base)
    let (batch, shardSize, steps) = (batch, shardSize, steps)
    func gradientSlots(count: Int) -> [UnsafeMutablePointer<Float>] {
      ReductionTree.gradientSlotIndices(
        shards: (count + shardSize - 1) / shardSize, blocks: blocks,
        localBlocks: (rank * workers)..<((rank + 1) * workers)
      ).map { slotBases[$0] }
    }
    fullBatchSlots = gradientSlots(count: min(batch, images))
    lastBatchSlots = gradientSlots(count: steps > 0 ? images - (steps - 1) * batch : 0)
    start = ContinuousClock().now
    self.target = target
  }
}
