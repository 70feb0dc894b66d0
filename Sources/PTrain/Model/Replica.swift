/// One worker's private copy of every buffer a forward and backward pass needs for a
/// single image: activations, conv2's Winograd tiles (and its transformed filters, unless
/// a trainer shares one set), and gradients of activations. conv1 (one input channel) runs directly and needs no scratch.
///
/// Gradients are computed a shard at a time: `beginShard()`, then `forward` and
/// `backward` for each image, then `endShard(gradient:)`. conv2's weight gradient is
/// summed over the shard in the Winograd domain and transformed back once, at the end.
///
/// A replica is created on its worker's thread so that its memory is first touched,
/// and therefore placed, on that worker's NUMA node. It never allocates afterwards.
public final class Replica {
  public let spec: ModelSpec
  let input: AlignedFloats
  let activation1: AlignedFloats, pooled1: AlignedFloats
  let activation2: AlignedFloats, pooled2: AlignedFloats
  let logits: AlignedFloats, logitGradient: AlignedFloats
  let pooled2Gradient: AlignedFloats, activation2Gradient: AlignedFloats
  let pooled1Gradient: AlignedFloats, activation1Gradient: AlignedFloats
  /// conv2 runs through Winograd F(2×2, 3×3): its transformed filters (the replica's own,
  /// set by `prepare`, or a trainer's shared set) and per-image scratch.
  public let conv2Filters: WinogradFilters
  let conv2InputTiles: AlignedFloats, conv2GradientTiles: AlignedFloats
  /// Zero-bordered copies of conv2's input and output gradient; the borders stay zero.
  let conv2PaddedInput: AlignedFloats, conv2PaddedGradient: AlignedFloats
  let conv2Products: AlignedFloats
  /// conv2's weight gradient of the shard so far, in the Winograd domain.
  let conv2WeightProducts: AlignedFloats
  /// Whether a shard is open: `backward` may run and `endShard` must follow.
  var inShard = false
  /// Whether `conv2WeightProducts` holds this shard's sum yet; the first image of a
  /// shard overwrites them, so they never need clearing.
  var shardHasProducts = false
  /// Which layers get gradients; backward skips the work of the others and stops as
  /// soon as no trainable layer lies below.
  let trainsConv1: Bool, trainsConv2: Bool, trainsDense: Bool

  /// A replica of `spec`'s model with `frozen` layers. With `filters`, conv2's transformed
  /// filters are that shared set, which its owner keeps up to date; without, the
  /// replica keeps its own and `prepare(parameters:)` fills them.
  public init(spec: ModelSpec, frozen: Set<ModelSpec.Layer> = [], filters: WinogradFilters? = nil) {
    self.spec = spec
    trainsConv1 = !frozen.contains(.conv1)
    trainsConv2 = !frozen.contains(.conv2)
    trainsDense = !frozen.contains(.dense)
    let c1 = spec.conv1
    let c2 = spec.conv2
    input = AlignedFloats(count: ModelSpec.imagePixels)
    activation1 = AlignedFloats(count: c1.outPixels * c1.outChannels)
    pooled1 = AlignedFloats(count: c2.height * c2.width * c2.inChannels)
    activation2 = AlignedFloats(count: c2.outPixels * c2.outChannels)
    pooled2 = AlignedFloats(count: spec.features)
    logits = AlignedFloats(count: spec.classes)
    logitGradient = AlignedFloats(count: spec.classes)
    pooled2Gradient = AlignedFloats(count: spec.features)
    activation2Gradient = AlignedFloats(count: activation2.count)
    pooled1Gradient = AlignedFloats(count: pooled1.count)
    activation1Gradient = AlignedFloats(count: activation1.count)
    let scratch = WinogradScratch(c2)
    conv2Filters = filters ?? WinogradFilters(shape: c2, keepsFlipped: trainsConv1)
    precondition(
      conv2Filters.shape == c2 && (conv2Filters.keepsFlipped || !trainsConv1),
      "Replica: the shared filters do not fit this model")
    conv2InputTiles = AlignedFloats(count: scratch.inputTiles)
    conv2PaddedInput = AlignedFloats(count: scratch.paddedInput)
    conv2PaddedGradient = AlignedFloats(count: scratch.paddedGradient)
    conv2GradientTiles = AlignedFloats(count: scratch.gradientTiles)
    conv2Products = AlignedFloats(count: scratch.products)
    conv2WeightProducts = AlignedFloats(count: winogradWeightCount(c2))
  }

  /// Runs the forward pass on one 28×28 image of bytes and returns the logits, which
  /// stay valid until the next call. `prepare(parameters:)` must have seen the current
  /// parameters. Cost: ≈ 2.8 MFLOP (4.9 MFLOP of direct convolution).
  @discardableResult
  public func forward(image: UnsafePointer<UInt8>, parameters p: UnsafePointer<Float>)
    -> UnsafeBufferPointer<Float>
  {
    let s = spec
    normalizePixels(image, count: ModelSpec.imagePixels, into: input.base)
    conv3x3OneChannelForward(
      input: input.base, shape: s.conv1, weights: p + s.conv1Weight, bias: p + s.conv1Bias,
      relu: true, output: activation1.base)
    maxPool2x2Forward(
      activation1.base, height: s.conv1.outHeight, width: s.conv1.outWidth,
      channels: s.conv1.outChannels, output: pooled1.base)
    winogradConv3x3Forward(
      input: pooled1.base, shape: s.conv2, transformedWeights: conv2Filters.forward.base, bias: p + s.conv2Bias,
      relu: true, paddedInput: conv2PaddedInput.base, inputTiles: conv2InputTiles.base, products: conv2Products.base,
      output: activation2.base)
    maxPool2x2Forward(
      activation2.base, height: s.conv2.outHeight, width: s.conv2.outWidth,
      channels: s.conv2.outChannels, output: pooled2.base)
    denseForward(
      input: pooled2.base, inputs: s.features, weights: p + s.denseWeight,
      bias: p + s.denseBias, outputs: s.classes, output: logits.base)
    return UnsafeBufferPointer(start: logits.base, count: s.classes)
  }

  /// Prepares state that depends only on the parameters: conv2's Winograd-transformed
  /// filters (and flipped ones when conv1 trains). Call after the parameters change and
  /// before `forward`, `backward` or `evaluate`; a trainer instead fills its shared
  /// filters itself. Cost: O(conv2 weights).
  public func prepare(parameters p: UnsafePointer<Float>) {
    conv2Filters.update(from: p + spec.conv2Weight)
  }

  /// Starts a shard. Cost: O(1).
  public func beginShard() {
    precondition(!inShard, "Replica.beginShard: the previous shard was not ended")
    inShard = true
    shardHasProducts = false
  }

  /// Ends a shard: adds conv2's weight gradient, summed over the shard's images, to
  /// `gradient`. Cost: O(conv2 weights · 16/9).
  public func endShard(gradient g: UnsafeMutablePointer<Float>) {
    precondition(inShard, "Replica.endShard: no shard was begun")
    inShard = false
    guard trainsConv2, shardHasProducts else { return }
    winogradAddWeightGradient(
      products: conv2WeightProducts.base, shape: spec.conv2, weightGradient: g + spec.conv2Weight)
  }

  /// After `forward` on an image, adds that image's gradient of the cross-entropy loss
  /// to `gradient` (laid out like the parameters) and returns the loss; conv2's weights'
  /// share reaches `gradient` at `endShard`. Frozen layers' gradients are neither
  /// computed nor written. Cost: ≈ 6.0 MFLOP (9.4 MFLOP of direct convolution) with
  /// nothing frozen, ≈ 0.03 MFLOP with only the dense head trainable.
  public func backward(
    label: Int, parameters p: UnsafePointer<Float>, gradient g: UnsafeMutablePointer<Float>
  ) -> Float {
    precondition(inShard, "Replica.backward: call beginShard() first")
    let s = spec
    let loss = softmaxCrossEntropy(
      logits: logits.base, classes: s.classes, label: label, gradient: logitGradient.base)
    denseBackward(
      input: pooled2.base, inputs: s.features, weights: p + s.denseWeight, outputs: s.classes,
      outputGradient: logitGradient.base, weightGradient: trainsDense ? g + s.denseWeight : nil,
      biasGradient: trainsDense ? g + s.denseBias : nil,
      inputGradient: trainsConv1 || trainsConv2 ? pooled2Gradient.base : nil)
    guard trainsConv1 || trainsConv2 else { return loss }
    maxPool2x2Backward(
      input: activation2.base, output: pooled2.base, outputGradient: pooled2Gradient.base,
      height: s.conv2.outHeight, width: s.conv2.outWidth, channels: s.conv2.outChannels,
      throughReLU: true, inputGradient: activation2Gradient.base)
    if trainsConv2 {
      winogradConv3x3WeightGradient(
        inputTiles: conv2InputTiles.base, outputGradient: activation2Gradient.base, shape: s.conv2,
        gradientTiles: conv2GradientTiles.base, products: conv2WeightProducts.base,
        accumulate: shardHasProducts, biasGradient: g + s.conv2Bias)
      shardHasProducts = true
    }
    guard trainsConv1 else { return loss }
    winogradConv3x3InputGradient(
      outputGradient: activation2Gradient.base, shape: s.conv2, flippedWeights: conv2Filters.flipped.base,
      paddedGradient: conv2PaddedGradient.base, gradientTiles: conv2GradientTiles.base, products: conv2Products.base,
      inputGradient: pooled1Gradient.base)
    maxPool2x2Backward(
      input: activation1.base, output: pooled1.base, outputGradient: pooled1Gradient.base,
      height: s.conv1.outHeight, width: s.conv1.outWidth, channels: s.conv1.outChannels,
      throughReLU: true, inputGradient: activation1Gradient.base)
    conv3x3OneChannelWeightGradient(
      input: input.base, outputGradient: activation1Gradient.base, shape: s.conv1,
      weightGradient: g + s.conv1Weight, biasGradient: g + s.conv1Bias)
    return loss
  }

  /// Forward pass on one image; returns its cross-entropy loss against `label` and the
  /// predicted class. Same contract and cost as `forward`.
  public func evaluate(image: UnsafePointer<UInt8>, label: Int, parameters: UnsafePointer<Float>)
    -> (loss: Float, prediction: Int)
  {
    let logits = forward(image: image, parameters: parameters)
    let loss = softmaxCrossEntropy(
      logits: logits.baseAddress!, classes: spec.classes, label: label, gradient: logitGradient.base)
    return (loss, argmax(logits.baseAddress!, count: spec.classes))
  }
}
