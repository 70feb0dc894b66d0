// Phases 3 to 5 of a worker's step (see `StepWorker`): the reduction of the shards'
// gradients across blocks (and ranks), the optimizer on the worker's slice, the step's end.

extension StepWorker {
  /// Under MPI: the tree pairs inside this rank that span its workers' blocks, then the
  /// shards' losses and the slots the other ranks' slices need.
  mutating func exchangeGradients() {
    let exchange = epoch.exchange!
    for range in epoch.localRanges[worker] {
      ReductionTree.reducePairsInsideRank(
        epoch.rank, ranks: epoch.ranks, slotBases, shards: shards, blocks: epoch.blocks, range: range)
    }
    wait(after: .reduce)
    if worker == 0 {
      exchange.shareShardRows(trainer.shardStats.base, stride: Trainer.statsStride, shards: shards)
      exchange.shareGradients(slotBases, shards: shards)
    }
    wait(after: .communicate)
  }

  /// Adds the tree pairs that span blocks over this worker's slice and notes the first
  /// non-finite sum in its flag.
  mutating func reduceSlice() {
    var firstNonFinite = -1
    for range in epoch.workerRanges[worker] {
      ReductionTree.reduceCrossWorkerPairs(slotBases, shards: shards, workers: epoch.reduceBlocks, range: range)
      if firstNonFinite < 0, let bad = PTrain.firstNonFinite(in: slotBases[0], range) { firstNonFinite = bad }
    }
    trainer.flags[(worker + 1) * Trainer.flagStride] = firstNonFinite
    wait(after: .reduce)
  }

  /// Every worker reaches the same verdict on the losses and the summed gradient; when
  /// all are finite, applies the optimizer to this worker's slice (worker 0 also moves the
  /// BatchNorm running statistics) and returns true.
  mutating func updateSlice() -> Bool {
    let t = trainer
    let flags = t.flags
    let stride = Trainer.flagStride
    var badGradient = (1...epoch.workers).lazy.map { flags[$0 * stride] }.first { $0 >= 0 }
    if let exchange = epoch.exchange {  // the first non-finite gradient of any rank, in rank order
      if worker == 0 { flags[(epoch.workers + 1) * stride] = exchange.firstOfRanks(badGradient ?? -1) }
      clock.charge(.barrier)
      t.pool.barrier.wait()
      clock.charge(.communicate)
      let first = flags[(epoch.workers + 1) * stride]
      badGradient = first >= 0 ? first : nil
    }
    let stats = t.shardStats.base
    let badLoss = (0..<shards).lazy.map { stats[$0 * Trainer.statsStride] }.first { !$0.isFinite }
    if badGradient != nil || badLoss != nil {
      if worker == 0 { t.recordFailure(step: step, gradientIndex: badGradient, loss: badLoss) }
      return false
    }
    if worker == 0, let observe = epoch.observeGradient {
      observe(UnsafeBufferPointer(start: slotBases[0], count: t.plan.parameterCount), count)
    }
    let rate = t.options.learningRate(atStep: t.optimizer.step, stepsPerEpoch: epoch.steps)
    for (range, decay) in epoch.workerUpdates[worker] {
      t.optimizer.update(
        range, parameters: epoch.parameters, gradient: slotBases[0], gradientScale: 1 / Float(count),
        learningRate: rate, weightDecay: decay)
    }
    if worker == 0 { t.updateRunningStatistics(from: replica) }
    wait(after: .optimizer)
    if let exchange = epoch.exchange {  // every rank gets every slice of the updated parameters
      if worker == 0 { exchange.shareUpdatedSlices() }
      wait(after: .communicate)
    }
    return true
  }

  /// Worker 0, after every worker's update: adds the shards' losses to the epoch's, counts
  /// the step, sends its event, and decides (with every rank) whether to stop after it.
  mutating func finishStep() {
    let t = trainer
    let stats = t.shardStats.base
    for shard in 0..<shards {
      t.epochLoss += Double(stats[shard * Trainer.statsStride])
      t.epochCorrect += Int(stats[shard * Trainer.statsStride + 1])
    }
    let rate = t.options.learningRate(atStep: t.optimizer.step, stepsPerEpoch: epoch.steps)
    t.optimizer.finishStep()
    t.stepsIntoEpoch = step + 1
    let seen = first + count
    onEvent(
      .step(
        StepProgress(
          epoch: epoch.epoch + 1, epochs: epoch.target, step: step + 1, stepsPerEpoch: epoch.steps, images: seen,
          loss: t.epochLoss / Double(seen), accuracy: Double(t.epochCorrect) / Double(seen),
          seconds: (ContinuousClock().now - epoch.start).seconds, learningRate: rate)))
    t.flags[0] = t.stopRequested ? 1 : 0
    clock.charge(.compute)
    if let exchange = epoch.exchange {  // all ranks stop after the same step
      t.flags[0] = exchange.processes.maximum(t.flags[0])
      clock.charge(.communicate)
    }
  }
}
