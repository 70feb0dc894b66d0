/// The bytes of transformed input tiles one Winograd GEMM may cover (see
/// `ReplicaLayout.winogradImages`). Measured on a Zen 4 core (1 MB of L2), `ptrain bench`
/// at 1 thread: no grouping ran `cifar-cnn` at 795 img/s (batch 128) and 730 (batch 32);
/// 160 KB, 320 KB and no limit all ran about 870 and 785, and `fashion-cnn` moved within
/// its noise; 320 KB keeps `cifar-cnn`'s 8×8 layers at 4 images and its 32×32 ones at 1.
let winogradTileBudget = 320 << 10

/// One worker's copy of every buffer a model's forward and backward passes need, and the
/// code that runs each planned layer's kernels on them.
///
/// A replica holds `slots` images at once, and runs its passes a group of up to
/// `groupImages` consecutive slots at a time, layer by layer: a Winograd layer puts the
/// tiles of up to `winogradImages` of them into one GEMM per point (longer GEMMs run
/// nearer the FMA peak), the other layers run image by image. A model without BatchNorm
/// needs one shard's images: a shard runs forward and backward before the next, so its
/// activations stay in cache. A model with BatchNorm needs the batch's statistics at every BatchNorm layer, so a
/// worker runs all its images through each segment between BatchNorm layers before the
/// next; then every activation is kept per image (`slots` = the worker's images in a
/// step). Every image's values have the same bits whatever its group.
///
/// All buffers live in one arena, allocated when the replica is created; a trainer creates
/// each replica on its worker's thread, so the memory is first touched, and placed, on
/// that worker's NUMA node. A replica never allocates afterwards.
///
/// Gradients are computed a shard at a time: `beginShard(layers:)`, then `backward` for the
/// shard's images (together or one by one), then `finishShard(layers:gradient:)`, which
/// adds the Winograd layers' weight gradients, summed over the shard in the Winograd
/// domain, to the shard's gradient.
package final class Replica {
  package let plan: ModelPlan
  /// How many images the buffers hold at once.
  package let slots: Int
  /// The filters the kernels read (see `PreparedWeights`): a trainer's shared set, or the
  /// replica's own, which `prepare(parameters:)` fills.
  package let prepared: PreparedWeights
  /// Per layer: whether its parameters get gradients, and whether its input gradient is
  /// computed (only when a layer with trainable parameters lies below).
  package let trains: [Bool]
  package let needsInputGradient: [Bool]
  let normalization: Normalization
  /// The fused paths this replica takes (`Fusions.all` in training).
  package let fusions: Fusions
  /// Per layer: whether it applies the ReLU above it as it stores its output.
  let fusesReLU: [Bool]
  let arena: AlignedFloats

  /// A buffer in the arena with `copies` images: slot `s` starts at
  /// `offset + (s mod copies) · stride`.
  struct Buffer {
    var offset: Int
    var stride: Int
    var copies: Int
  }
  let input: Buffer
  let outputs: [Buffer]
  let gradients: [Buffer]
  /// Per layer, per layer it reads: where its backward writes the gradient with respect
  /// to that input. The layer's own gradient buffer when it is the only reader, or the
  /// last of several; for the others, a buffer of their own, which `merges` adds in.
  let inputGradients: [[Buffer]]
  /// Per layer: after its backward, the gradients it adds up, as the first of the layers
  /// that read a layer's output (a residual block's input): the others' buffers, in
  /// order, added to the last one's.
  let merges: [[Merge]]
  struct Merge {
    /// The layer read by several.
    let layer: Int
    /// The gradients the readers but the last wrote, in the readers' order.
    let branches: [Buffer]
  }
  /// Per layer: scratch offsets by purpose, used once per image (not per slot).
  let scratch: [[Scratch: Int]]
  enum Scratch: Hashable {
    case paddedInput, inputTiles, gradientTiles, products, paddedGradient, weightProducts, weightBlock, columns
    case normalizationScale, normalizationShift
    case batchMean, batchInverseDeviation, batchScale, batchOffset, batchVariance, gradientSums
    case denseInputs, denseGradients, denseTreeStack
  }
  /// Per layer, what its passes need, resolved once: shapes, offsets and pointers, with
  /// nothing reference-counted, so that a pass copies no strings and takes no locks.
  let runs: [LayerRun]
  /// The per-channel factors of the input's standardisation.
  let normalizationScale: UnsafeMutablePointer<Float>, normalizationShift: UnsafeMutablePointer<Float>
  /// Per Winograd layer: whether its shard's weight products have been started.
  var hasProducts: [Bool]
  /// Per dense layer: the shard's images whose inputs and output gradients are kept for
  /// its weight gradient, done as one GEMM when the shard ends (or, in a dense block, the
  /// block's images so far). `denseCapacity` at most.
  var denseImages: [Int]
  /// The images whose inputs and output gradients a dense layer can keep: a shard's, or a
  /// worker's block of shards' (`beginDenseBlock`).
  package let denseCapacity: Int
  /// Whether a dense block is open (`beginDenseBlock`): shards then keep their dense
  /// layers' images for `finishDenseBlock` instead of flushing them.
  var inDenseBlock = false
  /// Per dense layer: whether the next flush writes its weight gradient instead of adding.
  var denseOverwrites: [Bool]
  package let shardImages: Int
  /// The most consecutive slots one pass runs at once: `min(slots, shardImages)`.
  package let groupImages: Int
  /// Per Winograd layer: how many images one pass's GEMMs cover (see
  /// `winogradImages(_:groupImages:budget:)`).
  let winogradImages: [Int]
  /// Per layer: whether it is a dense layer below a BatchNorm whose forward and input
  /// gradient can run over a worker's whole block of shards at once (`blockDense(in:)`).
  let blockDense: [Bool]
  /// Per layer: the slots whose input its scratch holds in the form its backward pass
  /// reads (Winograd tiles, im2col columns, a padded copy), or nil.
  var heldInput: [Range<Int>?]
  /// Per BatchNorm layer: the values per channel in the whole batch, set with its sums.
  var batchCounts: [Int]
  /// Per Winograd layer: the BatchNorm directly below it (through the ReLU fused into that
  /// BatchNorm, if any), which the convolution applies to the BatchNorm's input as it copies
  /// it into its padded buffer, or nil. Such a BatchNorm never stores its output, and its
  /// ReLU's backward recomputes the sign from the input (`reluBackwardThroughBatchNorm`):
  /// the same values as storing and reading them, without the two passes over memory.
  let normalizedBelow: [Int?]
  /// Per layer: whether it is a BatchNorm that the layer above applies (a convolution,
  /// `normalizedBelow`, or a residual block's addition, `addedBelow`).
  let appliedAbove: [Bool]
  /// Per residual block's addition: the BatchNorm that ends the block's body, when the
  /// addition is its only reader, or nil. The addition applies it to its input as it adds
  /// (`batchNormApplyAdding`), so that BatchNorm never stores its output.
  let addedBelow: [Int?]
  /// Per 2×2 max-pool layer: the BatchNorm directly below it (through the ReLU fused into
  /// that BatchNorm, if any), which the pool applies to the BatchNorm's input as it loads
  /// each window, forward and backward, or nil. Such a BatchNorm never stores its output
  /// either (`poolAbove`).
  let pooledBelow: [Int?]
  /// Per BatchNorm layer: the max-pool above that applies it, or nil. Such a BatchNorm's
  /// backward routes the pool's gradient itself (`PooledBatchNormGradient`), so
  /// the gradient at its output is never stored either, and the pool's output gradient is
  /// kept per image until the batch's sums are known.
  let poolAbove: [Int?]
  /// Per F(4×4) or F(5×5) convolution: the BatchNorm above it, its output's only reader,
  /// whose input gradient (the gradient at the convolution's output) the convolution's
  /// backward makes as it reads it (`BatchNormInputGradient`), or nil.
  let batchNormAbove: [Int?]
  /// Per layer: whether it is a BatchNorm whose input gradient the convolution below makes
  /// (`batchNormAbove`); its own backward does nothing.
  let gradientMadeBelow: [Bool]

  /// A replica of `plan` holding `slots` images, with the layers in `frozen` (indices)
  /// getting no gradients, for shards of up to `shardImages` images, and dense blocks of
  /// up to `denseBlockImages` (`beginDenseBlock`). Without `prepared`, it keeps its own
  /// prepared weights, filled by `prepare(parameters:)`. Cost: O(buffers), one allocation.
  package init(
    plan: ModelPlan, slots: Int = 1, shardImages: Int = 4, denseBlockImages: Int = 0, frozen: Set<Int> = [],
    normalization: Normalization = .mnist, prepared: PreparedWeights? = nil,
    winogradTileBudget: Int = PTrain.winogradTileBudget, fusions: Fusions = .all
  ) {
    precondition(slots >= 1 && shardImages >= 1, "Replica: slots and shard images must be at least 1")
    self.plan = plan
    self.slots = slots
    self.shardImages = shardImages
    denseCapacity = max(shardImages, denseBlockImages)
    groupImages = min(slots, shardImages)
    self.normalization = normalization
    let layout = ReplicaLayout(
      plan: plan, slots: slots, shardImages: shardImages, denseImages: max(shardImages, denseBlockImages),
      frozen: frozen, fusions: fusions,
      winogradTileBudget: winogradTileBudget)
    let layers = plan.layers
    let (trains, needsInputGradient, fusesReLU) = (layout.trains, layout.needsInputGradient, layout.fusesReLU)
    self.trains = trains
    self.needsInputGradient = needsInputGradient
    self.prepared = prepared ?? PreparedWeights(plan: plan, inputGradients: needsInputGradient)
    self.fusions = fusions
    self.fusesReLU = fusesReLU
    normalizedBelow = layout.normalizedBelow
    appliedAbove = layout.appliedAbove
    addedBelow = layout.addedBelow
    pooledBelow = layout.pooledBelow
    poolAbove = layout.poolAbove
    batchNormAbove = layout.batchNormAbove
    let made = Set(layout.batchNormAbove.compactMap { $0 })
    gradientMadeBelow = layers.map { made.contains($0.index) }
    input = layout.input
    outputs = layout.outputs
    gradients = layout.gradients
    inputGradients = layout.inputGradients
    merges = layout.merges
    winogradImages = layout.winogradImages
    blockDense = layout.blockDense
    let scratch = layout.scratch
    self.scratch = scratch
    let normalizationScratch = scratch[layers.count]
    let size = layout.floats
    hasProducts = [Bool](repeating: false, count: layers.count)
    heldInput = [Range<Int>?](repeating: nil, count: layers.count)
    denseImages = [Int](repeating: 0, count: layers.count)
    denseOverwrites = [Bool](repeating: false, count: layers.count)
    batchCounts = [Int](repeating: 1, count: layers.count)
    let arena = AlignedFloats(count: size)
    self.arena = arena
    normalizationScale = arena.base + normalizationScratch[.normalizationScale]!
    normalizationShift = arena.base + normalizationScratch[.normalizationShift]!
    let prepared = self.prepared
    runs = layers.map { layer in
      LayerRun(
        layer, plan: plan, trains: trains[layer.index], needsInputGradient: needsInputGradient[layer.index],
        fusesReLU: fusesReLU, reluGradientInMaxPool: fusions.contains(.reluGradientInMaxPool),
        scratch: scratch[layer.index].mapValues { arena.base + $0 }, prepared: prepared)
    }
    precondition(normalization.mean.count == plan.input.channels, "normalization of another channel count")
    for (c, (scale, shift)) in zip(normalization.scale, normalization.shift).enumerated() {
      arena.base[normalizationScratch[.normalizationScale]! + c] = scale
      arena.base[normalizationScratch[.normalizationShift]! + c] = shift
    }
  }

  /// A pooling layer's geometry (an empty one for other layers).
  static func poolShape(_ layer: ModelPlan.PlannedLayer) -> PoolShape {
    let window = (layer.layer.kind as? MaxPoolLayer)?.window ?? (layer.layer.kind as? AvgPoolLayer)?.window
    guard let window else { return PoolShape(height: 0, width: 0, channels: 0, size: 1, stride: 1) }
    return PoolShape(
      height: layer.input.height, width: layer.input.width, channels: layer.input.channels, size: window.size,
      stride: window.stride)
  }

  // MARK: - Buffers

  /// Layer `layer`'s output for slot `slot`; layer -1 is the standardised input image.
  @inline(__always) func output(_ layer: Int, _ slot: Int) -> UnsafeMutablePointer<Float> {
    let buffer = layer < 0 ? input : outputs[layer]
    return arena.base + buffer.offset + slot % buffer.copies * buffer.stride
  }

  /// The gradient of the loss with respect to layer `layer`'s output, for slot `slot`.
  @inline(__always) func gradient(_ layer: Int, _ slot: Int) -> UnsafeMutablePointer<Float> {
    arena.base + gradients[layer].offset + slot % gradients[layer].copies * gradients[layer].stride
  }

  /// Where layer `layer`'s backward writes the gradient with respect to its input
  /// `input` (0, or 1 for the shortcut of a residual block's addition) for slot `slot`.
  @inline(__always) func inputGradient(_ layer: Int, _ slot: Int, input: Int = 0) -> UnsafeMutablePointer<Float> {
    let buffer = inputGradients[layer][input]
    return arena.base + buffer.offset + slot % buffer.copies * buffer.stride
  }

  /// The logits of the image in `slot` after its forward pass.
  package func logits(slot: Int = 0) -> UnsafeBufferPointer<Float> {
    UnsafeBufferPointer(start: output(plan.layers.count - 1, slot), count: plan.classes)
  }

  // MARK: - One image at a time

  /// Fills the replica's own prepared weights from `parameters`. Call after the
  /// parameters change and before a pass; a trainer fills its shared set itself.
  /// Cost: O(weights).
  package func prepare(parameters p: UnsafePointer<Float>) { prepared.update(from: p) }

  /// The logits of one image in evaluation mode (BatchNorm's running statistics, no
  /// dropout), valid until the next pass. Cost: the forward FLOP.
  package func forward(
    image: UnsafePointer<UInt8>, parameters: UnsafePointer<Float>, state: UnsafePointer<Float>? = nil
  ) -> UnsafeBufferPointer<Float> {
    load(image: image)
    forward(layers: 0..<plan.layers.count, pass: Pass(parameters: parameters, state: state, training: false))
    return logits()
  }

  /// Adds one image's gradient of its cross-entropy loss against `label` to `gradient`
  /// (laid out like the parameters) and returns the loss: a shard of one image, for a
  /// model without BatchNorm (whose batch statistics need a whole batch; see `Trainer`).
  /// Cost: the forward and backward FLOP.
  package func addGradient(
    image: UnsafePointer<UInt8>, label: Int, parameters: UnsafePointer<Float>, pass seed: UInt64 = 0,
    into gradient: UnsafeMutablePointer<Float>
  ) -> Float {
    precondition(plan.batchNormLayers.isEmpty, "Replica.addGradient: BatchNorm needs a batch; use a Trainer")
    let layers = 0..<plan.layers.count
    var pass = Pass(parameters: parameters, training: true)
    pass.seed = seed
    load(image: image)
    forward(layers: layers, pass: pass)
    let value = loss(label: label)
    beginShard(layers: layers)
    backward(layers: layers, pass: pass, gradient: gradient, finishingShard: true)
    finishShard(layers: layers, gradient: gradient)
    return value
  }

  /// Forward pass of one image in evaluation mode (running statistics, no dropout);
  /// returns its cross-entropy loss against `label` and the predicted class.
  package func evaluate(
    image: UnsafePointer<UInt8>, label: Int, parameters: UnsafePointer<Float>, state: UnsafePointer<Float>? = nil
  ) -> (loss: Float, prediction: Int) {
    let logits = forward(image: image, parameters: parameters, state: state)
    return (loss(label: label), argmax(logits.baseAddress!, count: plan.classes))
  }
}
