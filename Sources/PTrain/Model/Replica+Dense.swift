/// A replica's dense layers in training: the images each keeps for its weight gradient,
/// per shard (`flushDense`) or per block of shards (`beginDenseBlock`, `finishDenseBlock`).
extension Replica {
  /// Opens a dense block: until `finishDenseBlock`, the shards' dense layers keep every
  /// image's input and output gradient (up to `denseCapacity` images) instead of writing
  /// their weight gradients when each shard ends. Cost: O(layers).
  package func beginDenseBlock(layers: Range<Int>) {
    for i in layers { denseImages[i] = 0 }
    inDenseBlock = true
  }

  /// Closes a dense block: writes each dense layer's weight gradient among `layers`, over
  /// the block's shards of `shardImages` images (the last may have fewer) summed as
  /// `program` says (`ReductionTree.localFoldProgram`), into the slots of `roots`, whose
  /// other parameters the shards' slots hold (see `denseTreeWeightGradient`).
  /// Cost: 2 · images · weights FLOP per dense layer.
  package func finishDenseBlock(
    layers: Range<Int>, program: UnsafeBufferPointer<Int>, roots: UnsafeBufferPointer<UnsafeMutablePointer<Float>>
  ) {
    inDenseBlock = false
    let stackCount = denseTreeScratchCount(blockShards: (denseCapacity + shardImages - 1) / shardImages)
    for i in layers where denseImages[i] > 0 {
      let run = runs[i]
      withUnsafeTemporaryAllocation(of: UnsafeMutablePointer<Float>.self, capacity: roots.count) { targets in
        for (k, root) in roots.enumerated() { targets[k] = root + run.weight }
        denseTreeWeightGradient(
          inputs: run.denseInputs!, outputGradients: run.denseGradients!, images: denseImages[i],
          shardSize: shardImages, inputCount: run.inputCount, outputCount: run.outputCount, program: program,
          roots: UnsafeBufferPointer(targets),
          scratch: UnsafeMutableBufferPointer(start: run.denseTreeStack!, count: stackCount))
      }
      denseImages[i] = 0
    }
  }

  /// Adds dense layer `i`'s weight gradient over the images kept since the last flush to
  /// `gradient`, as one GEMM (`dW += dYᵀ · X`, each element adding the images in order, as
  /// adding them one by one would), or writes it there when the shard began overwriting.
  func flushDense(_ i: Int, gradient g: UnsafeMutablePointer<Float>) {
    let run = runs[i]
    denseAddWeightGradient(
      inputs: run.denseInputs!, outputGradients: run.denseGradients!, images: denseImages[i],
      inputCount: run.inputCount, outputCount: run.outputCount, overwrite: denseOverwrites[i],
      weightGradient: g + run.weight)
    denseImages[i] = 0
    denseOverwrites[i] = false
  }

  /// The first dense layer among `layers` whose forward and input gradient can run over a
  /// worker's whole block at once instead of shard by shard (`forwardDense`,
  /// `denseInputGradient`), reading its weights from memory once per block instead of once
  /// per shard: one below a BatchNorm, in a replica that holds the block, whose input,
  /// output and gradients are held per image. Cost: O(layers).
  package func blockDense(in layers: Range<Int>) -> Int? { layers.first { blockDense[$0] } }

  /// Dense layer `i`'s forward over `slots` (any number of them, each holding its input),
  /// in one call: each image's bits are those of `forward`. Cost: 2 · images · weights FLOP.
  package func forwardDense(layer i: Int, slots: Range<Int>, pass: Pass) {
    let run = runs[i]
    precondition(blockDense[i] && slots.upperBound <= self.slots, "Replica: no block dense layer \(i)")
    PTrain.denseForward(
      input: output(run.input, slots.lowerBound), images: slots.count, inputs: run.inputCount,
      weights: pass.parameters + run.weight, bias: run.bias >= 0 ? pass.parameters + run.bias : nil,
      outputs: run.outputCount, relu: run.fusesReLU, output: output(i, slots.lowerBound))
  }

  /// Dense layer `i`'s backward for one shard's `group`, the first of two parts when its
  /// input gradient runs over the block (`denseInputGradient`): keeps each image's input
  /// and output gradient for the block's weight gradient (`finishDenseBlock`), and writes
  /// no gradient slot, which may still hold an earlier shard's sums (the slots are reused
  /// as the tree folds, `ReductionTree.gradientSlotIndices`). Cost: O(images · (inputs + outputs)).
  package func keepDenseImages(layer i: Int, slots group: Range<Int>) {
    precondition(blockDense[i] && inDenseBlock, "Replica: no dense block for layer \(i)")
    keepImages(group: group, layer: i, gradient: nil)
  }

  /// The second part for one shard (see `keepDenseImages`): adds dense layer `i`'s bias
  /// gradient over `group` to `gradient`. Cost: O(images · outputs).
  package func addDenseBiasGradient(layer i: Int, slots group: Range<Int>, gradient g: UnsafeMutablePointer<Float>) {
    let run = runs[i]
    guard run.trains && run.bias >= 0 else { return }
    addColumnSums(of: gradient(i, group.lowerBound), rows: group.count, columns: run.outputCount, to: g + run.bias)
  }

  /// Dense layer `i`'s input gradient over `slots`, whose output gradients are in place,
  /// in one call: each image's bits are those of `backward`. Cost: 2 · images · weights FLOP.
  package func denseInputGradient(layer i: Int, slots: Range<Int>, pass: Pass) {
    let run = runs[i]
    precondition(blockDense[i] && slots.upperBound <= self.slots, "Replica: no block dense layer \(i)")
    guard run.needsInputGradient else { return }
    PTrain.denseBackward(
      outputGradient: gradient(i, slots.lowerBound), images: slots.count, weights: pass.parameters + run.weight,
      inputs: run.inputCount, outputs: run.outputCount, biasGradient: nil,
      inputGradient: inputGradient(i, slots.lowerBound))
  }

  /// Dense layer `i`'s backward for the images in `group`: keeps each image's input and
  /// output gradient for the weight gradient (`finishShard`, or in a dense block
  /// `finishDenseBlock`), adds the bias gradient and computes the input gradient, one pass
  /// over the weights.
  func denseBackward(group: Range<Int>, layer i: Int, pass: Pass, gradient g: UnsafeMutablePointer<Float>) {
    let run = runs[i]
    keepImages(group: group, layer: i, gradient: g)
    PTrain.denseBackward(
      outputGradient: gradient(i, group.lowerBound), images: group.count, weights: pass.parameters + run.weight,
      inputs: run.inputCount, outputs: run.outputCount,
      biasGradient: run.trains && run.bias >= 0 ? g + run.bias : nil,
      inputGradient: run.needsInputGradient ? inputGradient(i, group.lowerBound) : nil)
  }

  /// Keeps the input and output gradient of each image in `group` for dense layer `i`'s
  /// weight gradient, when it trains; a shard longer than planned first flushes the images
  /// kept so far into `gradient` (never in a dense block, which has no gradient to give).
  private func keepImages(group: Range<Int>, layer i: Int, gradient g: UnsafeMutablePointer<Float>?) {
    let run = runs[i]
    guard run.trains else { return }  // the weight gradient waits for the shard's end (`finishShard`)
    for slot in group {
      if denseImages[i] == denseCapacity {  // a longer shard than planned
        precondition(!inDenseBlock, "Replica: a dense block holds more than \(denseCapacity) images")
        flushDense(i, gradient: g!)
      }
      let k = denseImages[i]
      (run.denseInputs! + k * run.inputCount).update(from: output(run.input, slot), count: run.inputCount)
      (run.denseGradients! + k * run.outputCount).update(from: gradient(i, slot), count: run.outputCount)
      denseImages[i] = k + 1
    }
  }
}
