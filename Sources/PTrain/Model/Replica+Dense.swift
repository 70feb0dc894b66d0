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

  /// Dense layer `i`'s backward for the images in `group`: keeps each image's input and
  /// output gradient for the weight gradient (`finishShard`, or in a dense block
  /// `finishDenseBlock`), adds the bias gradient and computes the input gradient, one pass
  /// over the weights per four images.
  func denseBackward(group: Range<Int>, layer i: Int, pass: Pass, gradient g: UnsafeMutablePointer<Float>) {
    let run = runs[i]
    if run.trains {  // the weight gradient waits for the shard's end (`finishShard`)
      for slot in group {
        if denseImages[i] == denseCapacity {  // a longer shard than planned
          precondition(!inDenseBlock, "Replica: a dense block holds more than \(denseCapacity) images")
          flushDense(i, gradient: g)
        }
        let k = denseImages[i]
        (run.denseInputs! + k * run.inputCount).update(from: output(run.input, slot), count: run.inputCount)
        (run.denseGradients! + k * run.outputCount).update(from: gradient(i, slot), count: run.outputCount)
        denseImages[i] = k + 1
      }
    }
    PTrain.denseBackward(
      outputGradient: gradient(i, group.lowerBound), images: group.count, weights: pass.parameters + run.weight,
      inputs: run.inputCount, outputs: run.outputCount,
      biasGradient: run.trains && run.bias >= 0 ? g + run.bias : nil,
      inputGradient: run.needsInputGradient ? inputGradient(i, group.lowerBound) : nil)
  }
}
