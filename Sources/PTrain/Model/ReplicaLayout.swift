/// Where every buffer of a replica lies in its arena, and which fused paths its passes
/// take: worked out from the plan alone, without allocating, so that a run's memory can be
/// known before any replica exists (`floats`). `Replica` allocates its arena from it.
struct ReplicaLayout {
  typealias Buffer = Replica.Buffer
  typealias Scratch = Replica.Scratch
  let slots: Int, shardImages: Int, groupImages: Int
  let trains: [Bool], needsInputGradient: [Bool]
  let fusions: Fusions
  /// Per layer: whether it applies the ReLU above it as it stores its output.
  let fusesReLU: [Bool]
  /// See `Replica.normalizedBelow`, `appliedAbove`, `pooledBelow` and `poolAbove`.
  let normalizedBelow: [Int?], appliedAbove: [Bool], pooledBelow: [Int?], poolAbove: [Int?]
  /// See `Replica.addedBelow` and `Replica.batchNormAbove`.
  let addedBelow: [Int?], batchNormAbove: [Int?]
  let input: Replica.Buffer
  let outputs: [Replica.Buffer], gradients: [Replica.Buffer]
  /// See `Replica.inputGradients` and `Replica.merges`.
  let inputGradients: [[Replica.Buffer]]
  let merges: [[Replica.Merge]]
  /// Per layer, then one entry for the input's normalisation: scratch offsets by purpose.
  let scratch: [[Replica.Scratch: Int]]
  let winogradImages: [Int]
  /// See `Replica.blockDense`.
  let blockDense: [Bool]
  /// The arena's size in Floats.
  let floats: Int

  /// The layout of a replica of `plan` holding `slots` images, whose dense layers keep up
  /// to `denseImages` images for their weight gradients (see `Replica.init`).
  /// Cost: O(layers).
  init(
    plan: ModelPlan, slots: Int, shardImages: Int, denseImages: Int, frozen: Set<Int>, fusions: Fusions,
    winogradTileBudget: Int
  ) {
    self.slots = slots
    self.shardImages = shardImages
    let groupImages = min(slots, shardImages)
    self.groupImages = groupImages
    self.fusions = fusions
    let layers = plan.layers
    let trains = layers.map { $0.hasParameters && !frozen.contains($0.index) }
    let needsInputGradient = plan.inputGradients(frozen: frozen)
    self.trains = trains
    self.needsInputGradient = needsInputGradient
    let fusesReLU = layers.map { $0.fusesReLU && fusions.contains(.reluOnStore) }
    self.fusesReLU = fusesReLU
    // Which BatchNorms the layer above applies as it reads their input (and so never store
    // their output): a Winograd convolution's, else a 2×2 max-pool's.
    let normalizedBelow: [Int?] = layers.map { layer in
      guard fusions.contains(.batchNormInConvolution), layer.kernel?.winogradOutputTile != nil else { return nil }
      return Self.batchNormBelow(layer.index, fusesReLU: fusesReLU, in: plan)
    }
    self.normalizedBelow = normalizedBelow
    // And the BatchNorms that end a residual block's body, which the addition applies.
    let addedBelow: [Int?] = layers.map { layer in
      guard fusions.contains(.batchNormInAddition), layer.layer.kind is ResidualLayer,
        let bn = layer.inputs.first, bn >= 0, layers[bn].layer == .batchNorm, plan.consumers[bn] == [layer.index]
      else { return nil }
      return bn
    }
    self.addedBelow = addedBelow
    let applied = Set(normalizedBelow.compactMap { $0 } + addedBelow.compactMap { $0 })
    appliedAbove = layers.map { applied.contains($0.index) }
    let pooledBelow: [Int?] = layers.map { layer in
      guard fusions.contains(.batchNormInMaxPool), layer.layer.kind is MaxPoolLayer,
        Replica.poolShape(layer).isTwoByTwo,
        let bn = Self.batchNormBelow(layer.index, fusesReLU: fusesReLU, in: plan), !applied.contains(bn),
        bn == plan.soleInput(of: layer.index) || fusions.contains(.reluGradientInMaxPool)
      else { return nil }
      return bn
    }
    self.pooledBelow = pooledBelow
    var poolAbove = [Int?](repeating: nil, count: layers.count)
    for (pool, bn) in pooledBelow.enumerated() { if let bn { poolAbove[bn] = pool } }
    self.poolAbove = poolAbove
    var size = 0
    func allocate(_ count: Int) -> Int {
      defer { size += roundUp(count, toMultipleOf: 16) }
      return size
    }
    func perSlot(_ count: Int) -> Buffer { Buffer(offset: allocate(count * slots), stride: count, copies: slots) }
    func perGroup(_ count: Int) -> Buffer {
      Buffer(offset: allocate(count * groupImages), stride: count, copies: groupImages)
    }
    input = perSlot(plan.input.count)
    // Forward: a ReLU fused into the layer below and a flatten share that layer's buffer.
    // A BatchNorm's output is held for one group only, even with more slots: it is
    // cheap to make again from its input (`backward` does, for the layers above), and
    // holding it for every image would double the memory of a BatchNorm model. But where
    // a layer reads it after the next BatchNorm's statistics (that BatchNorm itself, or a
    // residual block's addition above it), it is read again in a later segment, after
    // every image of the worker has passed: that one is held per image.
    var outputs: [Buffer] = []
    for layer in layers {
      let below = layer.input0 < 0 ? input : outputs[layer.input0]
      switch layer.layer.kind {
      case is FlattenLayer: outputs.append(below)
      case is ReLULayer where layer.input0 >= 0 && fusesReLU[layer.input0]: outputs.append(below)
      case is BatchNormLayer where Self.readInItsSegment(outputOf: layer.index, fusesReLU: fusesReLU, in: plan):
        outputs.append(perGroup(layer.output.count))
      default: outputs.append(perSlot(layer.output.count))
      }
    }
    self.outputs = outputs
    // The dense layers below a BatchNorm whose input and output are held per image, read
    // by no other layer: their forward and input gradient can run over the worker's block.
    // No layer between one and that BatchNorm has parameters: their backward runs for every
    // shard before any shard's gradient slot is free to write (see `StepWorker`).
    var blockDense = layers.map { layer in
      guard fusions.contains(.denseOverBlock), slots > groupImages, layer.layer.kind is DenseLayer, layer.input0 >= 0,
        plan.consumers[layer.input0] == [layer.index],
        let above = plan.batchNormLayers.first(where: { $0 > layer.index })
      else { return false }
      return outputs[layer.index].copies == slots && outputs[layer.input0].copies == slots
        && !layers[(layer.index + 1)..<above].contains { $0.hasParameters }
    }
    let gradientPlan = GradientBuffers(plan: plan, poolAbove: poolAbove)
    // So are their output gradients, from the block's first shard to its last, and the
    // gradients they write at their input, from the block's input gradient to each shard's
    // backward below.
    let perSlotGroups = Set(
      layers.indices.filter { blockDense[$0] }.flatMap { i in
        needsInputGradient[i] ? [gradientPlan.group[i], gradientPlan.group[layers[i].input0]] : [gradientPlan.group[i]]
      })
    var gradients: [Buffer] = []
    if plan.isSequential {
      gradients = Self.sequentialGradients(
        plan: plan, groups: gradientPlan.group, poolAbove: poolAbove, perSlotGroups: perSlotGroups, perSlot: perSlot,
        perGroup: perGroup)
    } else {
      var buffers: [Int: Buffer] = [:]
      for layer in layers {
        let group = gradientPlan.group[layer.index]
        let count = gradientPlan.widest[group]
        if buffers[group] == nil {
          let held = gradientPlan.spansSegments[group] || perSlotGroups.contains(group)
          buffers[group] = held ? perSlot(count) : perGroup(count)
        }
        let buffer = buffers[group]!
        gradients.append(Buffer(offset: buffer.offset, stride: layer.output.count, copies: buffer.copies))
      }
    }
    self.gradients = gradients
    var inputGradients: [[Buffer]] = []
    var merges = [[Replica.Merge]](repeating: [], count: layers.count)
    for layer in layers {
      inputGradients.append(
        layer.inputs.map { j in
          guard j >= 0 else { return Buffer(offset: 0, stride: 0, copies: 1) }  // the image: no gradient
          let readers = plan.consumers[j]
          return readers.last == layer.index ? gradients[j] : Buffer(offset: -1, stride: 0, copies: 0)
        })
    }
    // A layer read by several gets its gradient from the last; the others write theirs
    // apart, and the first adds them to it (see `Replica.merges`).
    for j in layers.indices where plan.consumers[j].count > 1 {
      let readers = plan.consumers[j]
      var branches: [Buffer] = []
      for reader in readers.dropLast() {
        let count = layers[j].output.count
        let branch = gradientPlan.level(reader) == gradientPlan.level(readers[0]) ? perGroup(count) : perSlot(count)
        branches.append(branch)
        for (k, input) in layers[reader].inputs.enumerated() where input == j { inputGradients[reader][k] = branch }
      }
      merges[readers[0]].append(Replica.Merge(layer: j, branches: branches))
    }
    self.inputGradients = inputGradients
    self.merges = merges
    // The BatchNorms whose input gradient the convolution below makes as it reads it.
    batchNormAbove = layers.map { layer in
      guard fusions.contains(.batchNormGradientInConvolution),
        layer.kernel == .winograd4 || layer.kernel == .winograd5, layer.bias == nil,
        let bn = plan.consumers[layer.index].first, plan.consumers[layer.index] == [bn],
        layers[bn].layer == .batchNorm, poolAbove[bn] == nil, needsInputGradient[layer.index],
        !Self.overlap(gradients[bn], inputGradients[layer.index][0])
      else { return nil }
      return bn
    }
    // (A gradient that another layer's buffer plan already holds otherwise, such as a
    // residual branch's, leaves the dense layer shard by shard.)
    for i in layers.indices where blockDense[i] && needsInputGradient[i] {
      blockDense[i] = inputGradients[i][0].copies == slots
    }
    self.blockDense = blockDense
    let winogradImages = layers.map {
      Self.winogradImages($0, groupImages: groupImages, budget: winogradTileBudget)
    }
    self.winogradImages = winogradImages
    var scratch: [[Scratch: Int]] = []
    for layer in layers {
      var own: [Scratch: Int] = [:]
      switch (layer.layer.kind, layer.kernel) {
      case (is ConvLayer, .winograd?):
        let shape = Conv3x3Shape(layer)
        let sizes = WinogradScratch(shape, images: winogradImages[layer.index])
        own[.paddedInput] = allocate(sizes.paddedInput)
        own[.inputTiles] = allocate(sizes.inputTiles)
        own[.gradientTiles] = allocate(sizes.gradientTiles)
        own[.products] = allocate(sizes.products)
        if needsInputGradient[layer.index] { own[.paddedGradient] = allocate(sizes.paddedGradient) }
        if trains[layer.index] { own[.weightProducts] = allocate(winogradWeightCount(shape)) }
      case (is ConvLayer, .winograd4?), (is ConvLayer, .winograd5?):
        let shape = Conv3x3Shape(layer)
        let five = layer.kernel == .winograd5
        let sizes = WinogradScratch(shape, images: winogradImages[layer.index], outputTile: five ? 5 : 4)
        own[.paddedInput] = allocate(sizes.paddedInput)
        own[.inputTiles] = allocate(sizes.inputTiles)
        own[.gradientTiles] = allocate(sizes.gradientTiles)
        own[.products] = allocate(sizes.products)
        if needsInputGradient[layer.index] {
          // A copy per image where the weight gradient reads a made gradient from them.
          let copies = batchNormAbove[layer.index] == nil ? 1 : winogradImages[layer.index]
          own[.paddedGradient] = allocate(sizes.paddedGradient * copies)
        }
        if trains[layer.index] {
          own[.weightProducts] = allocate(five ? WinogradF5.weightCount(shape) : WinogradF4.weightCount(shape))
          own[.weightBlock] = allocate(
            five ? WinogradF5.weightBlockCount(shape) : WinogradF4.weightBlockCount(shape))
        }
      case (let conv as ConvLayer, .directOneChannel?):
        if conv.padding == .same {
          own[.paddedInput] = allocate((layer.input.height + 2) * (layer.input.width + 2))
        }
      case (is ConvLayer, _):
        let shape = ConvShape(layer)
        own[.columns] = allocate(shape.outPixels * shape.patch)
      case (is DenseLayer, _) where trains[layer.index]:
        own[.denseInputs] = allocate(denseImages * layer.input.count)
        own[.denseGradients] = allocate(denseImages * layer.output.count)
        own[.denseTreeStack] = allocate(
          denseTreeScratchCount(blockShards: (denseImages + shardImages - 1) / shardImages))
      case (is BatchNormLayer, _):
        let channels = layer.inputIsFlat ? layer.input.count : layer.input.channels
        for purpose in [
          Scratch.batchMean, .batchInverseDeviation, .batchScale, .batchOffset, .batchVariance,
        ] {
          own[purpose] = allocate(channels)
        }
        own[.gradientSums] = allocate(2 * channels)
      default: break
      }
      scratch.append(own)
    }
    var normalizationScratch: [Scratch: Int] = [:]
    normalizationScratch[.normalizationScale] = allocate(plan.input.channels)
    normalizationScratch[.normalizationShift] = allocate(plan.input.channels)
    scratch.append(normalizationScratch)
    self.scratch = scratch
    floats = size
  }

  /// Whether BatchNorm `bn`'s output is read only in the segment above it: every layer
  /// that reads it (through a flatten or a ReLU fused into it, which share its buffer)
  /// is not a BatchNorm and lies below the next BatchNorm.
  static func readInItsSegment(outputOf bn: Int, fusesReLU: [Bool], in plan: ModelPlan) -> Bool {
    let nextBatchNorm = plan.batchNormLayers.first { $0 > bn } ?? plan.layers.count
    var pending = [bn]
    while let node = pending.popLast() {
      for reader in plan.consumers[node] {
        switch plan.layers[reader].layer.kind {
        case is FlattenLayer: pending.append(reader)
        case is ReLULayer where fusesReLU[node]: pending.append(reader)
        case is BatchNormLayer: return false
        default: if reader > nextBatchNorm { return false }
        }
      }
    }
    return true
  }

  /// The BatchNorm that only layer `i` reads, directly or through the ReLU fused into it
  /// (which only `i` reads), or nil.
  static func batchNormBelow(_ i: Int, fusesReLU: [Bool], in plan: ModelPlan) -> Int? {
    guard let below = plan.soleInput(of: i) else { return nil }
    if plan.layers[below].layer == .relu, let bn = plan.soleInput(of: below), fusesReLU[bn],
      plan.layers[bn].layer == .batchNorm
    {
      return bn
    }
    return plan.layers[below].layer == .batchNorm ? below : nil
  }

  /// Whether two buffers share a Float.
  static func overlap(_ a: Buffer, _ b: Buffer) -> Bool {
    a.offset < b.offset + b.stride * b.copies && b.offset < a.offset + a.stride * a.copies
  }

  /// How many of a group's images a Winograd layer's GEMMs cover at once: as many as keep
  /// their transformed inputs within `budget` bytes (so that they stay in a core's L2
  /// cache between the transform and the GEMMs), at least one, at most `groupImages`.
  static func winogradImages(_ layer: ModelPlan.PlannedLayer, groupImages: Int, budget: Int) -> Int {
    guard let tile = layer.kernel?.winogradOutputTile else { return 1 }
    let tiling = WinogradTiling.forward(Conv3x3Shape(layer), outputTile: tile)
    let bytes = tiling.transformedCount * MemoryLayout<Float>.stride
    return max(1, min(groupImages, budget / bytes))
  }
}
