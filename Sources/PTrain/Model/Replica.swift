/// The bytes of transformed input tiles one Winograd GEMM may cover (see
/// `ReplicaLayout.winogradImages`). Measured on a Zen 4 core (1 MB of L2), `ptrain bench`
/// at 1 thread: no grouping ran `cifar-cnn` at 795 img/s (batch 128) and 730 (batch 32);
/// 160 KB, 320 KB and no limit all ran about 870 and 785, and `fashion-cnn` moved within
/// its noise; 320 KB keeps `cifar-cnn`'s 8×8 layers at 4 images and its 32×32 ones at 1.
let winogradTileBudget = 320 << 10

/// Consecutive runs of at most `size` slots from `start` to `end`.
struct SlotRuns: Sequence, IteratorProtocol {
  var start: Int
  let end: Int
  let size: Int

  mutating func next() -> Range<Int>? {
    guard start < end else { return nil }
    defer { start = Swift.min(start + size, end) }
    return start..<Swift.min(start + size, end)
  }
}

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
  /// Per layer: scratch offsets by purpose, used once per image (not per slot).
  let scratch: [[Scratch: Int]]
  enum Scratch: Hashable {
    case paddedInput, inputTiles, gradientTiles, products, paddedGradient, weightProducts, weightBlock, columns
    case normalizationScale, normalizationShift
    case batchMean, batchInverseDeviation, batchScale, batchOffset, batchVariance, gradientSums
    case denseInputs, denseGradients
  }
  /// Per layer, what its passes need, resolved once: shapes, offsets and pointers, with
  /// nothing reference-counted, so that a pass copies no strings and takes no locks.
  let runs: [LayerRun]
  /// The per-channel factors of the input's standardisation.
  let normalizationScale: UnsafeMutablePointer<Float>, normalizationShift: UnsafeMutablePointer<Float>
  /// Per Winograd layer: whether its shard's weight products have been started.
  var hasProducts: [Bool]
  /// Per dense layer: the shard's images whose inputs and output gradients are kept for
  /// its weight gradient, done as one GEMM when the shard ends. `shardImages` at most.
  var denseImages: [Int]
  /// Per dense layer: whether the next flush writes its weight gradient instead of adding.
  var denseOverwrites: [Bool]
  package let shardImages: Int
  /// The most consecutive slots one pass runs at once: `min(slots, shardImages)`.
  package let groupImages: Int
  /// Per Winograd layer: how many images one pass's GEMMs cover (see
  /// `winogradImages(_:groupImages:budget:)`).
  let winogradImages: [Int]
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
  /// Per layer: whether it is a BatchNorm that the convolution above applies.
  let appliedAbove: [Bool]
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

  /// A replica of `plan` holding `slots` images, with the layers in `frozen` (indices)
  /// getting no gradients, for shards of up to `shardImages` images. Without `prepared`,
  /// it keeps its own prepared weights, filled by `prepare(parameters:)`. Cost:
  /// O(buffers), one allocation.
  package init(
    plan: ModelPlan, slots: Int = 1, shardImages: Int = 4, frozen: Set<Int> = [],
    normalization: Normalization = .mnist, prepared: PreparedWeights? = nil,
    winogradTileBudget: Int = PTrain.winogradTileBudget, fusions: Fusions = .all
  ) {
    precondition(slots >= 1 && shardImages >= 1, "Replica: slots and shard images must be at least 1")
    self.plan = plan
    self.slots = slots
    self.shardImages = shardImages
    groupImages = min(slots, shardImages)
    self.normalization = normalization
    let layout = ReplicaLayout(
      plan: plan, slots: slots, shardImages: shardImages, frozen: frozen, fusions: fusions,
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
    pooledBelow = layout.pooledBelow
    poolAbove = layout.poolAbove
    input = layout.input
    outputs = layout.outputs
    gradients = layout.gradients
    winogradImages = layout.winogradImages
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

  /// The logits of the image in `slot` after its forward pass.
  package func logits(slot: Int = 0) -> UnsafeBufferPointer<Float> {
    UnsafeBufferPointer(start: output(plan.layers.count - 1, slot), count: plan.classes)
  }

  // MARK: - Forward

  /// What a pass needs besides the buffers: the parameters, the BatchNorm running
  /// statistics (for evaluation), whether it trains (batch statistics, dropout), and the
  /// key of this image's dropout masks.
  package struct Pass {
    package var parameters: UnsafePointer<Float>
    package var state: UnsafePointer<Float>?
    package var training: Bool
    /// Dropout's masks are drawn from (seed, global step, position in the batch, layer).
    package var seed: UInt64 = 0, step: Int = 0, position: Int = 0

    package init(parameters: UnsafePointer<Float>, state: UnsafePointer<Float>? = nil, training: Bool) {
      self.parameters = parameters
      self.state = state
      self.training = training
    }

    /// The pass of the image `offset` places after this one in the batch.
    func at(_ offset: Int) -> Pass {
      var pass = self
      pass.position += offset
      return pass
    }
  }

  /// Standardises one image's bytes into `slot`'s input, cropped and flipped as `draw`
  /// says (see `Augmentation`). Cost: one multiply-add per value.
  package func load(
    image: UnsafePointer<UInt8>, slot: Int = 0, augmentation: Augmentation = .none,
    draw: (dy: Int, dx: Int, flip: Bool) = (0, 0, false)
  ) {
    let shape = plan.input
    let target = output(-1, slot)
    let scale = normalizationScale
    let shift = normalizationShift
    guard !augmentation.isNone else {
      normalizePixels(
        image, pixels: shape.height * shape.width, channels: shape.channels, scale: scale, shift: shift, into: target)
      return
    }
    let (h, w, c) = (shape.height, shape.width, shape.channels)
    let pad = augmentation.padding
    for y in 0..<h {
      let sourceY = y + draw.dy - pad
      for x in 0..<w {
        let sourceX = (draw.flip ? w - 1 - x : x) + draw.dx - pad
        let inside = sourceY >= 0 && sourceY < h && sourceX >= 0 && sourceX < w
        for channel in 0..<c {
          let byte = inside ? image[(sourceY * w + sourceX) * c + channel] : 0
          target[(y * w + x) * c + channel] = Float(byte) * scale[channel] + shift[channel]
        }
      }
    }
  }

  /// Runs the forward pass of `layers` on the image in `slot`. A BatchNorm layer in
  /// training needs its batch statistics set first (`setBatchStatistics`).
  package func forward(layers: Range<Int>, slot: Int = 0, pass: Pass) {
    forward(layers: layers, slots: slot..<(slot + 1), pass: pass)
  }

  /// Runs the forward pass of `layers` on the images in `group` (at most `groupImages`
  /// consecutive slots, not wrapping past a multiple of `groupImages`), layer by layer;
  /// `pass.position` is the first image's position in the batch, the next ones follow it.
  /// Each image gets the bits that a pass of its own gives.
  package func forward(layers: Range<Int>, slots group: Range<Int>, pass: Pass) {
    forward(layers: layers, slots: group, pass: pass, addingInputSumsOf: nil)
  }

  /// `forward(layers:slots:pass:)` up to BatchNorm `bn` (`layers.upperBound`), then adds
  /// each image's sums of its input to `sums`, as `addBatchNormInputSums` would image
  /// after image; an F(4×4) or F(5×5) convolution below adds them as it writes its output.
  package func forward(
    layers: Range<Int>, slots group: Range<Int>, pass: Pass, addingInputSumsOf bn: Int,
    state: UnsafePointer<Float>, into sums: UnsafeMutablePointer<Double>
  ) {
    precondition(layers.upperBound == bn && runs[bn].kind == .batchNorm)
    forward(
      layers: layers, slots: group, pass: pass,
      addingInputSumsOf: (bn: bn, sums: BatchNormInputSums(shift: state + runs[bn].runningMean, sums: sums)))
  }

  private func forward(
    layers: Range<Int>, slots group: Range<Int>, pass: Pass,
    addingInputSumsOf adding: (bn: Int, sums: BatchNormInputSums)?
  ) {
    precondition(group.count <= groupImages && group.lowerBound % groupImages + group.count <= groupImages)
    if group.count > 1 && !groupsPay(layers) {
      for slot in group {
        forward(
          layers: layers, slots: slot..<(slot + 1), pass: pass.at(slot - group.lowerBound), addingInputSumsOf: adding)
      }
      return
    }
    let p = pass.parameters
    var sumsAdded = false
    for i in layers {
      let run = runs[i]
      let bias = run.bias >= 0 ? p + run.bias : nil
      switch run.kind {
      case .winograd4, .winograd5:
        let addingSums = adding.flatMap {
          $0.bn == i + 1 && fusions.contains(.batchNormSumsInWinograd) ? $0.sums : nil
        }
        if run.kind == .winograd5 {
          forwardLargeWinograd(WinogradF5.self, layer: i, group: group, bias: bias, addingSums: addingSums)
        } else {
          forwardLargeWinograd(WinogradF4.self, layer: i, group: group, bias: bias, addingSums: addingSums)
        }
        sumsAdded = sumsAdded || addingSums != nil
      case .winograd:
        let (source, normalizing) = winogradInput(layer: i)
        for part in parts(of: group, layer: i) {
          winogradConv3x3Forward(
            input: output(source, part.lowerBound), images: part.count, shape: run.conv3x3,
            transformedWeights: run.winogradForward!, bias: bias, relu: run.fusesReLU, paddedInput: run.paddedInput!,
            inputTiles: run.inputTiles!, products: run.products!, output: output(i, part.lowerBound),
            normalizingInput: normalizing)
          heldInput[i] = part
        }
      case .dense:
        denseForward(
          input: output(i - 1, group.lowerBound), images: group.count, inputs: run.inputCount,
          weights: p + run.weight, bias: bias, outputs: run.outputCount, relu: run.fusesReLU,
          output: output(i, group.lowerBound))
      default:
        for slot in group {
          forwardOneImage(layer: i, slot: slot, pass: pass.at(slot - group.lowerBound))
        }
      }
    }
    if let adding, !sumsAdded {
      let run = runs[adding.bn]
      for slot in group {
        batchNormAddInputSums(
          output(adding.bn - 1, slot), pixels: run.pixels, channels: run.channels, shift: adding.sums.shift,
          sums: adding.sums.sums)
      }
    }
  }

  /// Whether `layers` hold a Winograd layer whose GEMMs cover several images, or a dense
  /// layer (whose weights one pass reads for up to four images). Where none does, a group
  /// runs image by image through all of them, so that each image's activations stay in
  /// cache from layer to layer (on large maps that was measured a few percent faster than
  /// layer by layer).
  private func groupsPay(_ layers: Range<Int>) -> Bool {
    layers.contains { winogradImages[$0] > 1 || runs[$0].kind == .dense }
  }

  /// Runs F(m×m, 3×3) layer `i` forward on the images of `group`, in parts that its
  /// scratch holds, adding the BatchNorm input sums of the layer above to `addingSums`.
  private func forwardLargeWinograd<Scheme: WinogradScheme>(
    _ scheme: Scheme.Type, layer i: Int, group: Range<Int>, bias: UnsafePointer<Float>?,
    addingSums: BatchNormInputSums?
  ) {
    let run = runs[i]
    let (source, normalizing) = winogradInput(layer: i)
    for part in parts(of: group, layer: i) {
      Scheme.conv3x3Forward(
        input: output(source, part.lowerBound), images: part.count, shape: run.conv3x3,
        transformedWeights: run.winogradForward!, bias: bias, relu: run.fusesReLU, paddedInput: run.paddedInput!,
        inputTiles: run.inputTiles!, products: run.products!, output: output(i, part.lowerBound),
        normalizingInput: normalizing, addingSums: addingSums)
      heldInput[i] = part
    }
  }

  /// What Winograd layer `i` reads: the layer whose output it takes, and the BatchNorm it
  /// applies on the way in (see `normalizedBelow`).
  private func winogradInput(layer i: Int) -> (source: Int, normalizing: FoldedBatchNorm?) {
    guard let bn = normalizedBelow[i] else { return (i - 1, nil) }
    return (bn - 1, folded(bn))
  }

  /// What max-pool layer `i` reads for `slot`: its input, or the input of the BatchNorm it
  /// applies on the way in (see `pooledBelow`) and that BatchNorm.
  private func poolInput(layer i: Int, slot: Int) -> (UnsafePointer<Float>, FoldedBatchNorm?) {
    guard let bn = pooledBelow[i] else { return (UnsafePointer(output(i - 1, slot)), nil) }
    return (UnsafePointer(output(bn - 1, slot)), folded(bn))
  }

  /// BatchNorm layer `bn`'s current scale and offset (and ReLU), for the layer that applies it.
  private func folded(_ bn: Int) -> FoldedBatchNorm {
    let run = runs[bn]
    return FoldedBatchNorm(
      scale: UnsafePointer(run.batchScale!), offset: UnsafePointer(run.batchOffset!), relu: run.fusesReLU)
  }

  /// `group` cut into runs of at most `winogradImages[layer]` slots: the images one
  /// Winograd GEMM covers.
  private func parts(of group: Range<Int>, layer: Int) -> SlotRuns {
    SlotRuns(start: group.lowerBound, end: group.upperBound, size: winogradImages[layer])
  }

  /// The forward pass of layer `i`, not a Winograd one, on the image in `slot`.
  private func forwardOneImage(layer i: Int, slot: Int, pass: Pass) {
    let p = pass.parameters
    let run = runs[i]
    let x = UnsafePointer(output(i - 1, slot))
    let y = output(i, slot)
    let bias = run.bias >= 0 ? p + run.bias : nil
    switch run.kind {
    case .winograd, .winograd4, .winograd5:
      preconditionFailure("Winograd layers run a group at a time")
    case .directOneChannel:
      let (source, shape) = directInput(run, x, refill: true)
      heldInput[i] = slot..<(slot + 1)
      conv3x3OneChannelForward(
        input: source, shape: shape, weights: p + run.weight, bias: bias, relu: run.fusesReLU, output: y)
    case .im2colGemm:
      convForward(
        input: x, shape: run.conv, weights: p + run.weight, bias: bias, relu: run.fusesReLU, columns: run.columns!,
        output: y)
      heldInput[i] = slot..<(slot + 1)
    case .batchNorm:
      if !pass.training { setRunningStatistics(run, pass: pass) }
      guard !appliedAbove[i] && poolAbove[i] == nil else { return }  // the layer above applies it
      batchNormApply(
        x, pixels: run.pixels, channels: run.channels, scale: run.batchScale!, offset: run.batchOffset!,
        relu: run.fusesReLU, output: y)
    case .relu:
      if !run.fusedIntoBelow {
        for k in 0..<run.outputCount { y[k] = max(x[k], 0) }
      }
    case .maxPool:
      let (source, normalizing) = poolInput(layer: i, slot: slot)
      maxPoolForward(source, shape: run.pool, output: y, normalizing: normalizing)
    case .avgPool:
      avgPoolForward(x, shape: run.pool, output: y)
    case .globalAvgPool:
      globalAvgPoolForward(x, pixels: run.pixels, channels: run.channels, output: y)
    case .flatten:
      break
    case .dense:
      denseForward(
        input: x, inputs: run.inputCount, weights: p + run.weight, bias: bias, outputs: run.outputCount,
        relu: run.fusesReLU, output: y)
    case .dropout:
      if pass.training && run.rate > 0 {
        dropoutForward(x, count: run.outputCount, rate: run.rate, key: dropoutKey(pass, layer: i), output: y)
      } else {
        y.update(from: x, count: run.outputCount)
      }
    }
  }

  /// The input of a direct one-channel convolution: the layer's input itself, or for
  /// "same" padding a zero-bordered copy (made anew when `refill`), with the valid
  /// convolution over it.
  private func directInput(_ run: LayerRun, _ x: UnsafePointer<Float>, refill: Bool)
    -> (UnsafePointer<Float>, Conv3x3Shape)
  {
    let shape = run.conv3x3
    guard shape.padding > 0, let padded = run.paddedInput else { return (x, shape) }
    let width = shape.width + 2
    if refill {
      for row in 0..<shape.height {
        (padded + (row + 1) * width + 1).update(from: x + row * shape.width, count: shape.width)
      }
    }
    return (
      UnsafePointer(padded),
      Conv3x3Shape(height: shape.height + 2, width: width, inChannels: 1, outChannels: shape.outChannels)
    )
  }

  private func dropoutKey(_ pass: Pass, layer: Int) -> UInt64 {
    PTrain.dropoutKey(seed: pass.seed, step: pass.step, position: pass.position, layer: layer)
  }

  /// Pixels and channels of a BatchNorm's input: a map's, or a vector's values as channels.
  func batchNormGeometry(_ layer: ModelPlan.PlannedLayer) -> (pixels: Int, channels: Int) {
    layer.inputIsFlat ? (1, layer.input.count) : (layer.input.height * layer.input.width, layer.input.channels)
  }

  /// Sets a BatchNorm's folded scale and offset from its running statistics.
  private func setRunningStatistics(_ run: LayerRun, pass: Pass) {
    let state = pass.state!
    let gamma = pass.parameters + run.weight
    let beta = pass.parameters + run.bias
    for c in 0..<run.channels {
      let inverse = 1 / (state[run.runningVariance + c] + ModelPlan.batchNormEpsilon).squareRoot()
      let scale = gamma[c] * inverse
      run.batchScale![c] = scale
      run.batchOffset![c] = beta[c] - state[run.runningMean + c] * scale
    }
  }

  /// Adds the image in `slot`'s sums of BatchNorm `layer`'s input to `sums` (2 · channels
  /// Doubles), shifted by the running mean (see `batchNormAddInputSums`).
  package func addBatchNormInputSums(
    layer i: Int, slot: Int, state: UnsafePointer<Float>, into sums: UnsafeMutablePointer<Double>
  ) {
    let run = runs[i]
    batchNormAddInputSums(
      output(i - 1, slot), pixels: run.pixels, channels: run.channels, shift: state + run.runningMean, sums: sums)
  }

  /// Sets BatchNorm `layer`'s batch statistics from the batch's shifted sums over `count`
  /// values per channel: the mean and biased variance normalise, and the unbiased
  /// variance is kept for the running statistics (`batchStatistics`). Cost: O(channels).
  package func setBatchStatistics(
    layer i: Int, sums: UnsafePointer<Double>, count: Int, parameters: UnsafePointer<Float>,
    state: UnsafePointer<Float>
  ) {
    let run = runs[i]
    let gamma = parameters + run.weight
    let beta = parameters + run.bias
    let n = Double(count)
    for c in 0..<run.channels {
      let shift = Double(state[run.runningMean + c])
      let meanOffset = sums[c] / n
      let variance = max(sums[run.channels + c] / n - meanOffset * meanOffset, 0)
      let mean = Float(shift + meanOffset)
      let inverse = Float(1 / (variance + Double(ModelPlan.batchNormEpsilon)).squareRoot())
      run.batchMean![c] = mean
      run.batchInverseDeviation![c] = inverse
      run.batchScale![c] = gamma[c] * inverse
      run.batchOffset![c] = beta[c] - mean * gamma[c] * inverse
      run.batchVariance![c] = Float(count > 1 ? variance * n / (n - 1) : variance)
    }
  }

  /// BatchNorm `layer`'s last batch mean and unbiased variance, for the running statistics.
  package func batchStatistics(layer i: Int) -> (mean: UnsafePointer<Float>, variance: UnsafePointer<Float>) {
    (UnsafePointer(runs[i].batchMean!), UnsafePointer(runs[i].batchVariance!))
  }

  // MARK: - Loss and backward

  /// After the forward pass of the image in `slot`, its cross-entropy loss against
  /// `label`; the logits' gradient goes where `backward` starts. Cost: O(classes).
  package func loss(label: Int, slot: Int = 0) -> Float {
    let last = plan.layers.count - 1
    return softmaxCrossEntropy(
      logits: output(last, slot), classes: plan.classes, label: label, gradient: gradient(last, slot))
  }

  /// Starts a shard for the Winograd and dense layers among `layers`: the next image's
  /// weight products replace theirs instead of adding to them, and the dense layers'
  /// kept images start again. With `overwritingDense`, the dense weights' gradients start
  /// from nothing instead of being added to `gradient` (`dW = dYᵀ · X`, the same bits as
  /// adding to zeros), so that a trainer need not clear them. Cost: O(layers).
  package func beginShard(layers: Range<Int>, overwritingDense: Bool = false) {
    for i in layers {
      hasProducts[i] = false
      denseImages[i] = 0
      denseOverwrites[i] = overwritingDense
    }
  }

  /// Ends a shard: adds to `gradient` the Winograd layers' weight gradients among
  /// `layers`, summed over the shard in the Winograd domain, and the dense layers' (see
  /// `flushDense`). Cost: O(weights · 16/9) and 2 · images · weights FLOP.
  package func finishShard(layers: Range<Int>, gradient g: UnsafeMutablePointer<Float>) {
    for i in layers where hasProducts[i] {
      let run = runs[i]
      if run.kind == .winograd4 {
        WinogradF4.addWeightGradient(products: run.weightProducts!, shape: run.conv3x3, weightGradient: g + run.weight)
      } else if run.kind == .winograd5 {
        WinogradF5.addWeightGradient(products: run.weightProducts!, shape: run.conv3x3, weightGradient: g + run.weight)
      } else {
        winogradAddWeightGradient(products: run.weightProducts!, shape: run.conv3x3, weightGradient: g + run.weight)
      }
      hasProducts[i] = false
    }
    for i in layers where denseImages[i] > 0 { flushDense(i, gradient: g) }
  }

  /// Adds dense layer `i`'s weight gradient over the images kept since the last flush to
  /// `gradient`, as one GEMM (`dW += dYᵀ · X`, each element adding the images in order, as
  /// adding them one by one would), or writes it there when the shard began overwriting.
  private func flushDense(_ i: Int, gradient g: UnsafeMutablePointer<Float>) {
    let run = runs[i]
    denseAddWeightGradient(
      inputs: run.denseInputs!, outputGradients: run.denseGradients!, images: denseImages[i],
      inputCount: run.inputCount, outputCount: run.outputCount, overwrite: denseOverwrites[i],
      weightGradient: g + run.weight)
    denseImages[i] = 0
    denseOverwrites[i] = false
  }

  /// Runs the backward pass of `layers`, from the highest down, for the image in `slot`,
  /// adding parameter gradients to `gradient` (laid out like the parameters). The gradient
  /// of the highest layer's output must be in place (`loss`, or the layers above). Layers
  /// whose work no trainable layer needs are skipped; a BatchNorm needs the batch's sums
  /// set first (`setBatchGradientSums`); its own parameters' gradients are the trainer's.
  package func backward(
    layers: Range<Int>, slot: Int = 0, pass: Pass, gradient g: UnsafeMutablePointer<Float>,
    finishingShard: Bool = false
  ) {
    backward(layers: layers, slots: slot..<(slot + 1), pass: pass, gradient: g, finishingShard: finishingShard)
  }

  /// Runs the backward pass of `layers` for the images in `group`, layer by layer, as
  /// `forward(layers:slots:pass:)` runs the forward pass. Every parameter's gradient adds
  /// the images in order, so the bits are those of one image at a time. With
  /// `finishingShard`, `group` holds the shard's last images (no `backward` for these
  /// layers follows before `finishShard`), so F(4×4) and F(5×5) layers add their weight
  /// gradient as their last images' products are made (`finishWeightGradient`), with the
  /// bits that `finishShard` would give.
  /// With `addingGradientSumsOf`, then adds each image's sums at that BatchNorm (the one
  /// below `layers`) to `sums`, as `addBatchNormGradientSums` would image after image; an
  /// F(4×4) or F(5×5) convolution that applies it adds them as it writes its input gradient
  /// (`BatchNormGradientRows`), taking the gradient through its ReLU on the way.
  package func backward(
    layers: Range<Int>, slots group: Range<Int>, pass: Pass, gradient g: UnsafeMutablePointer<Float>,
    finishingShard: Bool = false, addingGradientSumsOf target: (bn: Int, sums: UnsafeMutablePointer<Float>)? = nil
  ) {
    precondition(group.count <= groupImages && group.lowerBound % groupImages + group.count <= groupImages)
    precondition(target.map { $0.bn == layers.lowerBound - 1 && runs[$0.bn].kind == .batchNorm } ?? true)
    if group.count > 1 && !groupsPay(layers) {
      for slot in group {
        backward(
          layers: layers, slots: slot..<(slot + 1), pass: pass.at(slot - group.lowerBound), gradient: g,
          finishingShard: finishingShard && slot == group.upperBound - 1, addingGradientSumsOf: target)
      }
      return
    }
    var sumsAdded = false
    // The layers above a BatchNorm read its output, held for one group: make it again.
    if layers.lowerBound > 0, outputs[layers.lowerBound - 1].copies < slots,
      runs[layers.lowerBound - 1].kind == .batchNorm,
      !appliedAbove[layers.lowerBound - 1], poolAbove[layers.lowerBound - 1] == nil
    {
      forward(layers: (layers.lowerBound - 1)..<layers.lowerBound, slots: group, pass: pass)
    }
    for i in layers.reversed() {
      let run = runs[i]
      guard run.trains || run.needsInputGradient else { continue }
      switch run.kind {
      case .winograd4:
        let added = backwardLargeWinograd(
          WinogradF4.self, layer: i, group: group, gradient: g, finishingShard: finishingShard, sums: target)
        sumsAdded = sumsAdded || added
      case .winograd5:
        let added = backwardLargeWinograd(
          WinogradF5.self, layer: i, group: group, gradient: g, finishingShard: finishingShard, sums: target)
        sumsAdded = sumsAdded || added
      case .winograd:
        let biasGradient = run.trains && run.bias >= 0 ? g + run.bias : nil
        for part in parts(of: group, layer: i) {
          let dy = UnsafePointer(gradient(i, part.lowerBound))
          if run.trains {
            if heldInput[i] != part {  // the forward pass's tiles belong to other images by now
              let (source, normalizing) = winogradInput(layer: i)
              winogradTransformInput(
                output(source, part.lowerBound), images: part.count, tiling: .forward(run.conv3x3),
                padded: run.paddedInput!, into: run.inputTiles!, normalizing: normalizing)
              heldInput[i] = part
            }
            winogradConv3x3WeightGradient(
              inputTiles: run.inputTiles!, outputGradient: dy, images: part.count, shape: run.conv3x3,
              gradientTiles: run.gradientTiles!, products: run.weightProducts!, accumulate: hasProducts[i],
              biasGradient: biasGradient)
            hasProducts[i] = true
          }
          if run.needsInputGradient {
            winogradConv3x3InputGradient(
              outputGradient: dy, images: part.count, shape: run.conv3x3, flippedWeights: run.winogradFlipped!,
              paddedGradient: run.paddedGradient!, gradientTiles: run.gradientTiles!, products: run.products!,
              inputGradient: gradient(i - 1, part.lowerBound))
          }
        }
      case .dense:
        denseBackward(group: group, layer: i, pass: pass, gradient: g)
      case .relu where sumsAdded && i == layers.lowerBound && run.fusedIntoBelow:
        break  // the convolution above took the gradient through it (`BatchNormGradientRows`)
      default:
        for slot in group {
          backwardOneImage(layer: i, slot: slot, pass: pass.at(slot - group.lowerBound), gradient: g)
        }
      }
    }
    if let target, !sumsAdded {
      for slot in group { addBatchNormGradientSums(layer: target.bn, slot: slot, into: target.sums) }
    }
  }

  /// Runs F(m×m, 3×3) layer `i` backward on the images of `group`, as `backward` does:
  /// its weight and bias gradients into `gradient` (straight through a block for the
  /// shard's last images, with `finishingShard`), and its input gradient, through the
  /// BatchNorm below when `sums` names it. Returns whether it added that BatchNorm's sums.
  private func backwardLargeWinograd<Scheme: WinogradScheme>(
    _ scheme: Scheme.Type, layer i: Int, group: Range<Int>, gradient g: UnsafeMutablePointer<Float>,
    finishingShard: Bool, sums target: (bn: Int, sums: UnsafeMutablePointer<Float>)?
  ) -> Bool {
    let run = runs[i]
    let biasGradient = run.trains && run.bias >= 0 ? g + run.bias : nil
    var sumsAdded = false
    for part in parts(of: group, layer: i) {
      let dy = UnsafePointer(gradient(i, part.lowerBound))
      if run.trains {
        if heldInput[i] != part {  // the forward pass's tiles belong to other images by now
          let (source, normalizing) = winogradInput(layer: i)
          Scheme.transformInput(
            output(source, part.lowerBound), images: part.count, tiling: Scheme.forwardTiling(run.conv3x3),
            padded: run.paddedInput!, into: run.inputTiles!, normalizing: normalizing)
          heldInput[i] = part
        }
        let finishes = finishingShard && part.upperBound == group.upperBound
        Scheme.conv3x3WeightGradient(
          inputTiles: run.inputTiles!, outputGradient: dy, images: part.count, shape: run.conv3x3,
          gradientTiles: run.gradientTiles!, products: run.weightProducts!, accumulate: hasProducts[i],
          biasGradient: biasGradient, finishing: finishes ? (run.weightBlock!, g + run.weight) : nil)
        hasProducts[i] = !finishes  // finished products are in the gradient already
      }
      if run.needsInputGradient {
        let rows = target.flatMap {
          $0.bn == normalizedBelow[i] && fusions.contains(.batchNormSumsInWinograd)
            ? gradientRows(bn: $0.bn, slot: part.lowerBound, into: $0.sums) : nil
        }
        Scheme.conv3x3InputGradient(
          outputGradient: dy, images: part.count, shape: run.conv3x3, flippedWeights: run.winogradFlipped!,
          paddedGradient: run.paddedGradient!, gradientTiles: run.gradientTiles!, products: run.products!,
          inputGradient: gradient(i - 1, part.lowerBound), throughBatchNorm: rows)
        sumsAdded = sumsAdded || rows != nil
      }
    }
    return sumsAdded
  }

  /// The work on the rows of the input gradient that an F(4×4) or F(5×5) convolution writes at
  /// BatchNorm `bn`'s output, which it applies, for the images from `slot` on.
  private func gradientRows(bn: Int, slot: Int, into sums: UnsafeMutablePointer<Float>) -> BatchNormGradientRows {
    let run = runs[bn]
    return BatchNormGradientRows(
      input: output(bn - 1, slot),
      relu: run.fusesReLU ? (UnsafePointer(run.batchScale!), UnsafePointer(run.batchOffset!)) : nil,
      mean: run.batchMean!, inverseDeviation: run.batchInverseDeviation!, sums: sums)
  }

  /// Dense layer `i`'s backward for the images in `group`: keeps each image's input and
  /// output gradient for the shard's weight gradient (`finishShard`), adds the bias
  /// gradient and computes the input gradient, one pass over the weights per four images.
  private func denseBackward(group: Range<Int>, layer i: Int, pass: Pass, gradient g: UnsafeMutablePointer<Float>) {
    let run = runs[i]
    if run.trains {  // the weight gradient waits for the shard's end (`finishShard`)
      for slot in group {
        if denseImages[i] == shardImages { flushDense(i, gradient: g) }  // a longer shard than planned
        let k = denseImages[i]
        (run.denseInputs! + k * run.inputCount).update(from: output(i - 1, slot), count: run.inputCount)
        (run.denseGradients! + k * run.outputCount).update(from: gradient(i, slot), count: run.outputCount)
        denseImages[i] = k + 1
      }
    }
    PTrain.denseBackward(
      outputGradient: gradient(i, group.lowerBound), images: group.count, weights: pass.parameters + run.weight,
      inputs: run.inputCount, outputs: run.outputCount,
      biasGradient: run.trains && run.bias >= 0 ? g + run.bias : nil,
      inputGradient: run.needsInputGradient ? gradient(i - 1, group.lowerBound) : nil)
  }

  /// The backward pass of layer `i`, not a Winograd one, for the image in `slot`.
  private func backwardOneImage(layer i: Int, slot: Int, pass: Pass, gradient g: UnsafeMutablePointer<Float>) {
    let p = pass.parameters
    let run = runs[i]
    let dy = UnsafePointer(gradient(i, slot))
    let dx: UnsafeMutablePointer<Float>? = run.needsInputGradient ? gradient(i - 1, slot) : nil
    let x = UnsafePointer(output(i - 1, slot))
    let weightGradient = run.trains && run.weight >= 0 ? g + run.weight : nil
    let biasGradient = run.trains && run.bias >= 0 ? g + run.bias : nil
    let holdsInput = heldInput[i] == slot..<(slot + 1)
    switch run.kind {
    case .winograd, .winograd4, .winograd5:
      preconditionFailure("Winograd layers run a group at a time")
    case .directOneChannel:
      // Planned only where no input gradient is needed; its copy may be another image's.
      let (source, shape) = directInput(run, x, refill: !holdsInput)
      heldInput[i] = slot..<(slot + 1)
      conv3x3OneChannelWeightGradient(
        input: source, outputGradient: dy, shape: shape, weightGradient: weightGradient!,
        biasGradient: biasGradient)
    case .im2colGemm:
      if let weightGradient {
        if !holdsInput {
          im2col(x, shape: run.conv, columns: run.columns!)
          heldInput[i] = slot..<(slot + 1)
        }
        convWeightGradient(
          columns: run.columns!, outputGradient: dy, shape: run.conv, weightGradient: weightGradient,
          biasGradient: biasGradient)
      }
      if let dx {
        convInputGradient(
          outputGradient: dy, shape: run.conv, transposedWeights: run.transposed!, columns: run.columns!,
          inputGradient: dx)
        heldInput[i] = nil  // the columns were its scratch
      }
    case .batchNorm:
      guard let dx else { return }
      if let pool = poolAbove[i] {
        pooledGradient(bn: i, pool: pool, slot: slot).inputGradient(
          mean: run.batchMean!, inverseDeviation: run.batchInverseDeviation!, gamma: p + run.weight,
          sums: run.gradientSums!, batchCount: batchCounts[i], into: dx)
        return
      }
      batchNormInputGradient(
        outputGradient: dy, input: x, pixels: run.pixels, channels: run.channels, mean: run.batchMean!,
        inverseDeviation: run.batchInverseDeviation!, gamma: p + run.weight, sums: run.gradientSums!,
        batchCount: batchCounts[i], inputGradient: dx)
    case .relu:
      // Max-pool's backward above takes the ReLU's gradient itself (`throughReLU`).
      if run.fusedIntoBelow, appliedAbove[i - 1] {  // its output was never stored
        let bn = runs[i - 1]
        reluBackwardThroughBatchNorm(
          dx!, input: output(i - 2, slot), pixels: bn.pixels, channels: bn.channels, scale: bn.batchScale!,
          offset: bn.batchOffset!)
      } else if !run.maxPoolAbove {
        reluBackwardInPlace(dx!, output: output(i, slot), count: run.outputCount)
      }
    case .maxPool:
      guard pooledBelow[i] == nil else { return }  // the BatchNorm below routes its gradient (`poolAbove`)
      let (source, normalizing) = poolInput(layer: i, slot: slot)
      maxPoolBackward(
        input: source, output: output(i, slot), outputGradient: dy, shape: run.pool, throughReLU: run.reluBelow,
        inputGradient: dx!, normalizing: normalizing)
    case .avgPool:
      avgPoolBackward(outputGradient: dy, shape: run.pool, inputGradient: dx!)
    case .globalAvgPool:
      globalAvgPoolBackward(outputGradient: dy, pixels: run.pixels, channels: run.channels, inputGradient: dx!)
    case .flatten:
      break
    case .dense:
      denseBackward(group: slot..<(slot + 1), layer: i, pass: pass, gradient: g)
    case .dropout:
      if pass.training && run.rate > 0 {
        dropoutBackward(dx!, count: run.outputCount, rate: run.rate, key: dropoutKey(pass, layer: i))
      }
    }
  }

  /// Adds the image in `slot`'s `Σ dy` and `Σ dy · x̂` at BatchNorm `layer` (its output's
  /// gradient, already through the ReLU above) to `sums` (2 · channels Floats).
  package func addBatchNormGradientSums(layer i: Int, slot: Int, into sums: UnsafeMutablePointer<Float>) {
    let run = runs[i]
    if let pool = poolAbove[i] {
      pooledGradient(bn: i, pool: pool, slot: slot).addSums(
        mean: run.batchMean!, inverseDeviation: run.batchInverseDeviation!, into: sums)
      return
    }
    batchNormAddGradientSums(
      outputGradient: gradient(i, slot), input: output(i - 1, slot), pixels: run.pixels, channels: run.channels,
      mean: run.batchMean!, inverseDeviation: run.batchInverseDeviation!, sums: sums)
  }

  /// BatchNorm `bn`, which max-pool `pool` applies, with that pool, for `slot` (see `poolAbove`).
  private func pooledGradient(bn: Int, pool: Int, slot: Int) -> PooledBatchNormGradient {
    let shape = runs[pool].pool
    return PooledBatchNormGradient(
      input: output(bn - 1, slot), output: output(pool, slot), outputGradient: gradient(pool, slot),
      height: shape.height, width: shape.width, channels: shape.channels, throughReLU: runs[pool].reluBelow,
      normalizing: folded(bn))
  }

  /// Sets BatchNorm `layer`'s batch sums of `Σ dy` and `Σ dy · x̂` over `count` values
  /// per channel, for its input gradient.
  package func setBatchGradientSums(layer i: Int, sums: UnsafePointer<Float>, count: Int) {
    runs[i].gradientSums!.update(from: sums, count: 2 * runs[i].channels)
    batchCounts[i] = count
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

/// One planned layer as a replica's passes need it: the kernel to run, its shapes, its
/// parameters' offsets, its scratch and prepared filters. Plain values and pointers only.
struct LayerRun {
  enum Kind {
    case winograd, winograd4, winograd5, directOneChannel, im2colGemm, batchNorm, relu, maxPool, avgPool, globalAvgPool,
      flatten
    case dense
    case dropout
  }
  let kind: Kind
  let trains: Bool, needsInputGradient: Bool
  /// Parameter offsets of the weight and bias (BatchNorm: γ and β), or -1.
  let weight: Int, bias: Int
  /// Running mean and variance offsets in the state buffer (BatchNorm), or -1.
  let runningMean: Int, runningVariance: Int
  let fusesReLU: Bool
  /// A ReLU that the layer below applies as it stores (so the ReLU does nothing forward).
  let fusedIntoBelow: Bool
  /// A ReLU whose gradient the max-pool above takes (so the ReLU does nothing backward).
  let maxPoolAbove: Bool
  /// A max-pool whose input comes out of a ReLU.
  let reluBelow: Bool
  let inputCount: Int, outputCount: Int
  /// BatchNorm and global pooling: pixels and channels of the input.
  let pixels: Int, channels: Int
  let rate: Float
  let conv3x3: Conv3x3Shape
  let conv: ConvShape
  let pool: PoolShape
  let paddedInput, inputTiles, gradientTiles, products, paddedGradient, weightProducts, weightBlock,
    columns: UnsafeMutablePointer<Float>?
  let batchMean, batchInverseDeviation, batchScale, batchOffset, batchVariance,
    gradientSums: UnsafeMutablePointer<Float>?
  let denseInputs, denseGradients: UnsafeMutablePointer<Float>?
  let winogradForward, winogradFlipped, transposed: UnsafePointer<Float>?

  /// The run of `layer` of `plan`, where `fusesReLU` says which layers apply the ReLU
  /// above them as they store, and `reluGradientInMaxPool` whether a max-pool takes the
  /// gradient of the ReLU below it (see `Fusions`).
  init(
    _ layer: ModelPlan.PlannedLayer, plan: ModelPlan, trains: Bool, needsInputGradient: Bool, fusesReLU: [Bool],
    reluGradientInMaxPool: Bool, scratch: [Replica.Scratch: UnsafeMutablePointer<Float>], prepared: PreparedWeights
  ) {
    let i = layer.index
    switch (layer.layer.kind, layer.kernel) {
    case (is ConvLayer, .winograd?): kind = .winograd
    case (is ConvLayer, .winograd4?): kind = .winograd4
    case (is ConvLayer, .winograd5?): kind = .winograd5
    case (is ConvLayer, .directOneChannel?): kind = .directOneChannel
    case (is ConvLayer, _): kind = .im2colGemm
    case (is BatchNormLayer, _): kind = .batchNorm
    case (is ReLULayer, _): kind = .relu
    case (is MaxPoolLayer, _): kind = .maxPool
    case (is AvgPoolLayer, _): kind = .avgPool
    case (is GlobalAvgPoolLayer, _): kind = .globalAvgPool
    case (is FlattenLayer, _): kind = .flatten
    case (is DenseLayer, _): kind = .dense
    case (is DropoutLayer, _): kind = .dropout
    default: preconditionFailure("no operation for layer kind \(layer.layer.word)")
    }
    self.trains = trains
    self.needsInputGradient = needsInputGradient
    weight = layer.weight?.offset ?? -1
    bias = layer.bias?.offset ?? -1
    runningMean = layer.runningMean?.offset ?? -1
    runningVariance = layer.runningVariance?.offset ?? -1
    self.fusesReLU = fusesReLU[i]
    fusedIntoBelow = layer.layer == .relu && i > 0 && fusesReLU[i - 1]
    maxPoolAbove =
      reluGradientInMaxPool && layer.layer == .relu && i + 1 < plan.layers.count
      && plan.layers[i + 1].layer.kind is MaxPoolLayer
    reluBelow =
      reluGradientInMaxPool && layer.layer.kind is MaxPoolLayer && i > 0
      && plan.layers[i - 1].layer == .relu
    inputCount = layer.input.count
    outputCount = layer.output.count
    let flat = layer.inputIsFlat
    pixels = flat ? 1 : layer.input.height * layer.input.width
    channels = flat ? layer.input.count : layer.input.channels
    rate = (layer.layer.kind as? DropoutLayer)?.rate ?? 0
    let convolution = layer.layer.kind as? ConvLayer
    let isConv3x3 = convolution.map { $0.kernel == 3 && $0.stride == 1 } ?? false
    conv3x3 = isConv3x3 ? Conv3x3Shape(layer) : Conv3x3Shape(height: 0, width: 0, inChannels: 0, outChannels: 0)
    if convolution != nil {
      conv = ConvShape(layer)
    } else {
      conv = ConvShape(height: 0, width: 0, inChannels: 0, outChannels: 0, kernel: 1, stride: 1, padding: 0)
    }
    pool = Replica.poolShape(layer)
    paddedInput = scratch[.paddedInput]
    inputTiles = scratch[.inputTiles]
    gradientTiles = scratch[.gradientTiles]
    products = scratch[.products]
    paddedGradient = scratch[.paddedGradient]
    weightProducts = scratch[.weightProducts]
    weightBlock = scratch[.weightBlock]
    columns = scratch[.columns]
    batchMean = scratch[.batchMean]
    batchInverseDeviation = scratch[.batchInverseDeviation]
    batchScale = scratch[.batchScale]
    batchOffset = scratch[.batchOffset]
    batchVariance = scratch[.batchVariance]
    gradientSums = scratch[.gradientSums]
    denseInputs = scratch[.denseInputs]
    denseGradients = scratch[.denseGradients]
    winogradForward = prepared.winograd[i].map { UnsafePointer($0.forward.base) }
    winogradFlipped = prepared.winograd[i].flatMap { $0.keepsFlipped ? UnsafePointer($0.flipped.base) : nil }
    transposed = prepared.transposed[i].map { UnsafePointer($0.base) }
  }
}
