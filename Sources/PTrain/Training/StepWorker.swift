/// One worker's part of training steps, its phases as methods in the order `run(step:)`
/// calls them, with the barriers between them (see `Trainer` for the protocol):
///
/// 1. `prepareWeights`: its slice of the prepared weights;
/// 2. `forwardToBatchNorms`, `forwardAndBackwardTop`, `backwardBelowBatchNorms`: its
///    block of shards, segment by segment between BatchNorm layers, each shard's gradient
///    folded into the reduction tree as soon as its segment is done, the dense layers'
///    weight gradients summed in the tree's order when the block's segment is done;
/// 3. `reduceSlice`: the tree pairs that span blocks, over its slice of the parameters;
/// 4. `updateSlice`: every worker's verdict on the sums, then the optimizer on its slice;
/// 5. `finishStep` (worker 0): the step's loss, the event, and whether to stop.
struct StepWorker {
  let trainer: Trainer
  let epoch: EpochSteps
  let worker: Int
  let replica: Replica
  /// The images' bytes (the data's, or the segment's staged from `firstStaged` on), the
  /// labels, and the epoch's order.
  let pixels: UnsafeBufferPointer<UInt8>, labels: UnsafeBufferPointer<UInt8>, order: UnsafeBufferPointer<Int32>
  let firstStaged: Int
  let inMemory: Bool
  /// The fan-out's steps: at the first, frozen layers' prepared weights are filled too.
  let segment: Range<Int>
  /// Receives each step's `.step` event (on worker 0).
  let onEvent: @Sendable (TrainingEvent) -> Void
  var clock: PhaseClock

  // The step in progress.
  var step = 0, first = 0, count = 0, shards = 0
  var slotBases: [UnsafeMutablePointer<Float>] = []
  private var myShards = 0..<0
  private var firstImage = 0
  private var globalStep = 0
  /// The first layer above the BatchNorm segments the forward has run.
  private var segmentStart = 0
  /// How the block's shards fold (`ReductionTree.localFoldProgram`), and the slots of the
  /// subtrees left, where the dense layers' weight gradients go (`finishDenseBlock`).
  private var foldProgram: [Int] = [], rootShards: [Int] = [], rootSlots: [UnsafeMutablePointer<Float>] = []

  init(
    trainer: Trainer, epoch: EpochSteps, worker: Int, pixels: UnsafeBufferPointer<UInt8>,
    labels: UnsafeBufferPointer<UInt8>, order: UnsafeBufferPointer<Int32>, firstStaged: Int, inMemory: Bool,
    segment: Range<Int>, onEvent: @escaping @Sendable (TrainingEvent) -> Void
  ) {
    self.trainer = trainer
    self.epoch = epoch
    self.worker = worker
    replica = trainer.replicas[worker]
    (self.pixels, self.labels, self.order) = (pixels, labels, order)
    self.firstStaged = firstStaged
    self.inMemory = inMemory
    self.segment = segment
    self.onEvent = onEvent
    clock = PhaseClock(times: trainer.phaseNanoseconds + worker * Trainer.phaseStride)
  }

  /// Runs step `step`; false when the workers stop after it or before applying it (a stop
  /// request, a non-finite loss or gradient).
  mutating func run(step: Int) -> Bool {
    prepareWeights(step: step, firstOfFanOut: step == segment.lowerBound)
    forwardToBatchNorms()
    forwardAndBackwardTop()
    backwardBelowBatchNorms()
    wait(after: .compute)
    if trainer.flags[0] != 0 { return false }  // a stop was requested after the last step
    if epoch.exchange != nil { exchangeGradients() }
    reduceSlice()
    guard updateSlice() else { return false }
    if worker == 0 { finishStep() }
    return true
  }

  /// Charges the time so far to `phase`, waits at the barrier, and charges the wait.
  mutating func wait(after phase: TrainingPhase) {
    clock.charge(phase)
    trainer.pool.barrier.wait()
    clock.charge(.barrier)
  }

  // MARK: - Phase 1

  /// The step's sizes, then this worker's slice of the prepared weights (frozen layers'
  /// never change, so they are filled once per fan-out).
  private mutating func prepareWeights(step: Int, firstOfFanOut: Bool) {
    self.step = step
    first = step * epoch.batch
    count = min(epoch.batch, epoch.images - first)
    shards = (count + epoch.shardSize - 1) / epoch.shardSize
    slotBases = count == epoch.batch ? epoch.fullBatchSlots : epoch.lastBatchSlots
    trainer.prepared.update(
      from: epoch.parameters, part: worker, of: epoch.workers, skipping: firstOfFanOut ? [] : epoch.frozen)
    wait(after: .compute)
    globalStep = trainer.optimizer.step  // worker 0 advanced it before the last barrier
    myShards = evenShare(of: shards, part: epoch.rank * epoch.workers + worker, parts: epoch.blocks)
    firstImage = myShards.lowerBound * epoch.shardSize
    segmentStart = 0
    ReductionTree.localFoldProgram(block: myShards, shards: shards, program: &foldProgram, roots: &rootShards)
    rootSlots.removeAll(keepingCapacity: true)
    for shard in rootShards { rootSlots.append(slotBases[shard]) }
  }

  /// Writes the dense layers' weight gradients among `layers` over the block's shards.
  private func finishDenseBlock(layers: Range<Int>) {
    foldProgram.withUnsafeBufferPointer { program in
      rootSlots.withUnsafeBufferPointer { roots in
        replica.finishDenseBlock(layers: layers, program: program, roots: roots)
      }
    }
  }

  // MARK: - Phase 2

  /// Where the image at `position` in the batch lives in the replica: its own slot when
  /// the replica holds the worker's whole block (BatchNorm), else its place in its shard.
  private func slotIndex(_ position: Int) -> Int { (position - firstImage) % replica.slots }

  /// The images of shard `shard`: positions in the batch.
  private func images(of shard: Int) -> Range<Int> {
    (shard * epoch.shardSize)..<min((shard + 1) * epoch.shardSize, count)
  }

  /// The replica's slots of shard `shard`'s images.
  private func imageSlots(of shard: Int) -> Range<Int> {
    let positions = images(of: shard)
    let start = slotIndex(positions.lowerBound)
    return start..<(start + positions.count)
  }

  /// The pass of the image at `position`: its dropout masks are keyed by the global step.
  private func pass(position: Int) -> Replica.Pass {
    var pass = Replica.Pass(parameters: epoch.parameters, state: epoch.runningState, training: true)
    pass.seed = epoch.seed
    pass.step = globalStep
    pass.position = position
    return pass
  }

  /// Loads the image at `position`, augmented, into its slot.
  private func load(_ position: Int) {
    let index = Int(order[first + position])
    let stagedAt = inMemory ? index : first + position - firstStaged
    replica.load(
      image: pixels.baseAddress! + stagedAt * epoch.imageBytes, slot: slotIndex(position),
      augmentation: epoch.augmentation,
      draw: epoch.augmentation.draw(
        seed: epoch.seed, epoch: epoch.epoch, index: index, height: replica.plan.input.height,
        width: replica.plan.input.width))
  }

  /// The replica's slots of this worker's block of shards, or nil when it has none.
  private var blockSlots: Range<Int>? {
    guard let last = myShards.last else { return nil }
    return imageSlots(of: myShards.lowerBound).lowerBound..<imageSlots(of: last).upperBound
  }

  /// The forward of the segments below each BatchNorm, adding each shard's input sums at
  /// the BatchNorm; after a barrier (and, under MPI, an exchange of the shards' sums)
  /// every worker adds the shards' sums in shard order and sets the batch's statistics.
  /// A segment's dense layer (`Replica.blockDense`) runs once over the block, between the
  /// shards' layers below it and above it.
  private mutating func forwardToBatchNorms() {
    let t = trainer
    for bn in epoch.batchNorms {
      let offset = t.batchSumOffsets[bn]!
      let width = 2 * t.plan.layers[bn].runningMean!.count
      /// Shard `shard`'s forward of `layers`, up to the BatchNorm, adding its input sums.
      func forwardAddingSums(_ layers: Range<Int>, shard: Int) {
        let partial = t.batchInputSums + shard * t.batchSumStride + offset
        partial.update(repeating: 0, count: width)
        replica.forward(
          layers: layers, slots: imageSlots(of: shard), pass: pass(position: images(of: shard).lowerBound),
          addingInputSumsOf: bn, state: epoch.runningState, into: partial)
      }
      let block = blockSlots
      let dense = block.flatMap { _ in replica.blockDense(in: segmentStart..<bn) }
      for shard in myShards {
        let positions = images(of: shard)
        if segmentStart == 0 { positions.forEach(load) }
        if let dense {
          replica.forward(
            layers: segmentStart..<dense, slots: imageSlots(of: shard), pass: pass(position: positions.lowerBound))
        } else {
          forwardAddingSums(segmentStart..<bn, shard: shard)
        }
      }
      if let dense, let block {
        replica.forwardDense(layer: dense, slots: block, pass: pass(position: firstImage))
        for shard in myShards { forwardAddingSums((dense + 1)..<bn, shard: shard) }
      }
      clock.charge(.compute)
      t.pool.barrier.wait()
      if let exchange = epoch.exchange {  // every rank gets every shard's sums
        clock.charge(.barrier)
        if worker == 0 { exchange.shareShardRows(t.batchInputSums, stride: t.batchSumStride, shards: shards) }
        clock.charge(.communicate)
        t.pool.barrier.wait()
      }
      let sums = t.workerInputSums + worker * t.workerSumStride
      sums.update(repeating: 0, count: width)
      for shard in 0..<shards {
        let partial = t.batchInputSums + shard * t.batchSumStride + offset
        for k in 0..<width { sums[k] += partial[k] }
      }
      let (pixelsPerImage, _) = replica.batchNormGeometry(t.plan.layers[bn])
      replica.setBatchStatistics(
        layer: bn, sums: sums, count: count * pixelsPerImage, parameters: epoch.parameters, state: epoch.runningState)
      clock.charge(.sync)
      segmentStart = bn
    }
  }

  /// Per shard: the top segment's forward, the loss and correct count, and its backward
  /// into the shard's gradient slot, adding the gradient sums of the BatchNorm below.
  private mutating func forwardAndBackwardTop() {
    let t = trainer
    let stats = t.shardStats.base
    let belowTop = epoch.batchNorms.last
    replica.beginDenseBlock(layers: epoch.topLayers)
    for shard in myShards {
      let slot = slotBases[shard]
      for range in epoch.topPerShard { (slot + range.lowerBound).update(repeating: 0, count: range.count) }
      var loss: Float = 0
      var correct = 0
      replica.beginShard(layers: epoch.topLayers, overwritingDense: true)
      if let bn = belowTop {
        (t.batchGradientSums + shard * t.batchSumStride + t.batchSumOffsets[bn]!).update(
          repeating: 0, count: 2 * t.plan.layers[bn].runningMean!.count)
      }
      let positions = images(of: shard)
      let shardPass = pass(position: positions.lowerBound)
      if segmentStart == 0 { positions.forEach(load) }
      replica.forward(layers: segmentStart..<epoch.layerCount, slots: imageSlots(of: shard), pass: shardPass)
      for position in positions {
        let label = Int(labels[Int(order[first + position])])
        let logits = replica.logits(slot: slotIndex(position))
        if argmax(logits.baseAddress!, count: logits.count) == label { correct += 1 }
        loss += replica.loss(label: label, slot: slotIndex(position), smoothing: t.options.labelSmoothing)
      }
      replica.backward(
        layers: epoch.topLayers, slots: imageSlots(of: shard), pass: shardPass, gradient: slot, finishingShard: true,
        addingGradientSumsOf: gradientSums(of: belowTop, shard: shard))
      replica.finishShard(layers: epoch.topLayers, gradient: slot)
      stats[shard * Trainer.statsStride] = loss
      stats[shard * Trainer.statsStride + 1] = Float(correct)
      ReductionTree.foldLocalPairs(
        after: shard, block: myShards, shards: shards, slots: slotBases, ranges: epoch.topPerShard)
    }
    finishDenseBlock(layers: epoch.topLayers)
  }

  /// Where a shard's backward adds the gradient sums of BatchNorm `bn`, when it needs them.
  private func gradientSums(of bn: Int?, shard: Int) -> (Int, UnsafeMutablePointer<Float>)? {
    guard let bn, replica.trains[bn] || replica.needsInputGradient[bn] else { return nil }
    return (bn, trainer.batchGradientSums + shard * trainer.batchSumStride + trainer.batchSumOffsets[bn]!)
  }

  /// The lower segments' backward, from the top BatchNorm down: at each BatchNorm, after a
  /// barrier, the batch's gradient sums; then per shard γ's and β's gradients (the shard's
  /// own sums) and the segment's backward where it has work (`EpochSteps.levelRunsBackward`),
  /// until no level below has any.
  private mutating func backwardBelowBatchNorms() {
    let t = trainer
    for (level, bn) in epoch.batchNorms.enumerated().reversed() {
      guard epoch.workAtOrBelow[level] else { break }
      let layer = t.plan.layers[bn]
      let channels = layer.runningMean!.count
      let offset = t.batchSumOffsets[bn]!
      if replica.needsInputGradient[bn] {
        clock.charge(.compute)
        t.pool.barrier.wait()
        if let exchange = epoch.exchange {
          clock.charge(.barrier)
          if worker == 0 { exchange.shareShardRows(t.batchGradientSums, stride: t.batchSumStride, shards: shards) }
          clock.charge(.communicate)
          t.pool.barrier.wait()
        }
        let gradientSums = t.workerGradientSums + worker * t.workerSumStride
        gradientSums.update(repeating: 0, count: 2 * channels)
        for shard in 0..<shards {
          let partial = t.batchGradientSums + shard * t.batchSumStride + offset
          for k in 0..<(2 * channels) { gradientSums[k] += partial[k] }
        }
        let (pixelsPerImage, _) = replica.batchNormGeometry(layer)
        replica.setBatchGradientSums(layer: bn, sums: gradientSums, count: count * pixelsPerImage)
        clock.charge(.sync)
      }
      let lowerLayers = epoch.levelLayers[level]
      let next = level > 0 ? epoch.batchNorms[level - 1] : nil
      /// Shard `shard`'s gradient: its slot's share of the level (the BatchNorm's γ and β,
      /// and with a block dense layer its bias), then its backward of `layers`, the level's
      /// lowest, folded into the tree.
      func finish(shard: Int, layers: Range<Int>, dense: Int?) {
        let slot = slotBases[shard]
        for range in epoch.levelPerShard[level] { (slot + range.lowerBound).update(repeating: 0, count: range.count) }
        if replica.trains[bn] {
          BatchNormLayer.addParameterGradients(
            sums: t.batchGradientSums + shard * t.batchSumStride + offset, layer: layer, into: slot)
        }
        if let dense { replica.addDenseBiasGradient(layer: dense, slots: imageSlots(of: shard), gradient: slot) }
        if epoch.levelRunsBackward[level] {
          replica.beginShard(layers: layers, overwritingDense: true)
          if let next {
            (t.batchGradientSums + shard * t.batchSumStride + t.batchSumOffsets[next]!).update(
              repeating: 0, count: 2 * t.plan.layers[next].runningMean!.count)
          }
          replica.backward(
            layers: layers, slots: imageSlots(of: shard), pass: pass(position: images(of: shard).lowerBound),
            gradient: slot, finishingShard: true, addingGradientSumsOf: gradientSums(of: next, shard: shard))
          replica.finishShard(layers: lowerLayers, gradient: slot)
        }
        ReductionTree.foldLocalPairs(
          after: shard, block: myShards, shards: shards, slots: slotBases, ranges: epoch.levelPerShard[level])
      }
      replica.beginDenseBlock(layers: lowerLayers)
      // A block dense layer (`Replica.blockDense`) computes its input gradient once for the
      // block, after every shard's layers above it, which write no gradient slot: a shard's
      // slot may be an earlier shard's until that one is folded.
      let block = blockSlots
      guard epoch.levelRunsBackward[level], let block, let dense = replica.blockDense(in: lowerLayers) else {
        for shard in myShards { finish(shard: shard, layers: lowerLayers, dense: nil) }
        finishDenseBlock(layers: lowerLayers)
        continue
      }
      let above = (dense + 1)..<lowerLayers.upperBound
      for shard in myShards {
        let shardPass = pass(position: images(of: shard).lowerBound)
        replica.beginShard(layers: above, overwritingDense: true)
        replica.backward(layers: above, slots: imageSlots(of: shard), pass: shardPass, gradient: slotBases[shard])
        replica.keepDenseImages(layer: dense, slots: imageSlots(of: shard))
      }
      replica.denseInputGradient(layer: dense, slots: block, pass: pass(position: firstImage))
      for shard in myShards { finish(shard: shard, layers: lowerLayers.lowerBound..<dense, dense: dense) }
      finishDenseBlock(layers: lowerLayers)
    }
  }
}
