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
  let input: Replica.Buffer
  let outputs: [Replica.Buffer], gradients: [Replica.Buffer]
  /// Per layer, then one entry for the input's normalisation: scratch offsets by purpose.
  let scratch: [[Replica.Scratch: Int]]
  let winogradImages: [Int]
  /// The arena's size in Floats.
  let floats: Int

  /// The layout of a replica of `plan` holding `slots` images (see `Replica.init`).
  /// Cost: O(layers).
  init(
    plan: ModelPlan, slots: Int, shardImages: Int, frozen: Set<Int>, fusions: Fusions, winogradTileBudget: Int
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
      return Self.batchNormBelow(layer.index, fusesReLU: fusesReLU, in: layers)
    }
    self.normalizedBelow = normalizedBelow
    let applied = Set(normalizedBelow.compactMap { $0 })
    appliedAbove = layers.map { applied.contains($0.index) }
    let pooledBelow: [Int?] = layers.map { layer in
      guard fusions.contains(.batchNormInMaxPool), layer.layer.kind is MaxPoolLayer,
        Replica.poolShape(layer).isTwoByTwo,
        let bn = Self.batchNormBelow(layer.index, fusesReLU: fusesReLU, in: layers), !applied.contains(bn),
        bn == layer.index - 1 || fusions.contains(.reluGradientInMaxPool)
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
    // the next BatchNorm reads it (nothing but a buffer-sharing ReLU or flatten between),
    // it is read again in the next segment, after every image of the worker has passed:
    // that one is held per image.
    var outputs: [Buffer] = []
    for layer in layers {
      let below = layer.index == 0 ? input : outputs[layer.index - 1]
      switch layer.layer.kind {
      case is FlattenLayer: outputs.append(below)
      case is ReLULayer where layer.index > 0 && fusesReLU[layer.index - 1]: outputs.append(below)
      case is BatchNormLayer where !Self.batchNormReads(outputOf: layer.index, fusesReLU: fusesReLU, in: layers):
        outputs.append(perGroup(layer.output.count))
      default: outputs.append(perSlot(layer.output.count))
      }
    }
    self.outputs = outputs
    // Backward: relu, flatten and dropout work on their gradient in place, so the layer
    // below shares it. A buffer is kept per image only where a BatchNorm's gradient has to
    // wait for the batch's sums; elsewhere one group's gradients at a time suffice.
    var group = [Int](repeating: 0, count: layers.count)
    var groups = 1
    for i in stride(from: layers.count - 1, through: 1, by: -1) {
      switch layers[i].layer.kind {
      case is ReLULayer, is FlattenLayer, is DropoutLayer: group[i - 1] = group[i]
      default:
        group[i - 1] = groups
        groups += 1
      }
    }
    // The gradients at BatchNorm outputs are needed per image, but only two BatchNorms'
    // at a time (the segment's top and bottom), so alternate BatchNorms share two buffers.
    // A BatchNorm that a max-pool applies needs the pool's output gradient instead (see
    // `poolAbove`), a quarter of the size, kept per image on its own.
    var groupBuffers: [Int: Buffer] = [:]
    for parity in 0..<2 {
      let members = plan.batchNormLayers.enumerated().filter { $0.offset % 2 == parity && poolAbove[$0.element] == nil }
        .map(\.element)
      guard let widest = members.map({ layers[$0].output.count }).max() else { continue }
      let shared = perSlot(widest)
      for member in members { groupBuffers[group[member]] = shared }
    }
    for case let pool? in poolAbove { groupBuffers[group[pool]] = perSlot(layers[pool].output.count) }
    gradients = layers.map { layer in
      // Each layer's images lie one after another at its own size, as the kernels that
      // run several at once expect (a shared buffer is as large as its widest member's).
      if let buffer = groupBuffers[group[layer.index]] {
        return Buffer(offset: buffer.offset, stride: layer.output.count, copies: buffer.copies)
      }
      let buffer = perGroup(layer.output.count)
      groupBuffers[group[layer.index]] = buffer
      return buffer
    }
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
        if needsInputGradient[layer.index] { own[.paddedGradient] = allocate(sizes.paddedGradient) }
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
        own[.denseInputs] = allocate(shardImages * layer.input.count)
        own[.denseGradients] = allocate(shardImages * layer.output.count)
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

  /// Whether the first layer above `i` that does not share `i`'s output buffer (a ReLU
  /// fused into `i`, a flatten) is a BatchNorm, which reads that buffer as its input.
  static func batchNormReads(outputOf i: Int, fusesReLU: [Bool], in layers: [ModelPlan.PlannedLayer]) -> Bool {
    var reader = i + 1
    while reader < layers.count {
      switch layers[reader].layer.kind {
      case is FlattenLayer: reader += 1
      case is ReLULayer where fusesReLU[reader - 1]: reader += 1
      case is BatchNormLayer: return true
      default: return false
      }
    }
    return false
  }

  /// The BatchNorm directly below layer `i`, or below the ReLU fused into it, or nil.
  static func batchNormBelow(_ i: Int, fusesReLU: [Bool], in layers: [ModelPlan.PlannedLayer]) -> Int? {
    let below = i - 1
    if below >= 1, layers[below].layer == .relu, fusesReLU[below - 1], layers[below - 1].layer == .batchNorm {
      return below - 1
    }
    return below >= 0 && layers[below].layer == .batchNorm ? below : nil
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
