/// One worker's private copy of every buffer a forward and backward pass needs for a
/// single image: activations, im2col matrices and gradients of activations.
///
/// A replica is created on its worker's thread so that its memory is first touched,
/// and therefore placed, on that worker's NUMA node. It never allocates afterwards.
public final class Replica {
  public let spec: ModelSpec
  let input: AlignedFloats
  let columns1: AlignedFloats, activation1: AlignedFloats, pooled1: AlignedFloats
  let columns2: AlignedFloats, activation2: AlignedFloats, pooled2: AlignedFloats
  let logits: AlignedFloats, logitGradient: AlignedFloats
  let pooled2Gradient: AlignedFloats, activation2Gradient: AlignedFloats
  let pooled1Gradient: AlignedFloats, columns2Gradient: AlignedFloats
  let activation1Gradient: AlignedFloats
  let conv2WeightsTransposed: AlignedFloats
  /// Which layers get gradients; backward skips the work of the others and stops as
  /// soon as no trainable layer lies below.
  let trainsConv1: Bool, trainsConv2: Bool, trainsDense: Bool

  public init(spec: ModelSpec, frozen: Set<ModelSpec.Layer> = []) {
    self.spec = spec
    trainsConv1 = !frozen.contains(.conv1)
    trainsConv2 = !frozen.contains(.conv2)
    trainsDense = !frozen.contains(.dense)
    let c1 = spec.conv1
    let c2 = spec.conv2
    input = AlignedFloats(count: ModelSpec.imagePixels)
    columns1 = AlignedFloats(count: c1.outPixels * c1.patch)
    activation1 = AlignedFloats(count: c1.outPixels * c1.outChannels)
    pooled1 = AlignedFloats(count: c2.height * c2.width * c2.inChannels)
    columns2 = AlignedFloats(count: c2.outPixels * c2.patch)
    activation2 = AlignedFloats(count: c2.outPixels * c2.outChannels)
    pooled2 = AlignedFloats(count: spec.features)
    logits = AlignedFloats(count: spec.classes)
    logitGradient = AlignedFloats(count: spec.classes)
    pooled2Gradient = AlignedFloats(count: spec.features)
    activation2Gradient = AlignedFloats(count: activation2.count)
    pooled1Gradient = AlignedFloats(count: pooled1.count)
    columns2Gradient = AlignedFloats(count: columns2.count)
    activation1Gradient = AlignedFloats(count: activation1.count)
    conv2WeightsTransposed = AlignedFloats(count: c2.weightCount)
  }

  /// Runs the forward pass on one 28×28 image of bytes and returns the logits, which
  /// stay valid until the next call. Cost: ≈ 4.9 MFLOP.
  @discardableResult
  public func forward(image: UnsafePointer<UInt8>, parameters p: UnsafePointer<Float>)
    -> UnsafeBufferPointer<Float>
  {
    let s = spec
    normalizePixels(image, count: ModelSpec.imagePixels, into: input.base)
    conv3x3Forward(
      input: input.base, shape: s.conv1, weights: p + s.conv1Weight, bias: p + s.conv1Bias,
      columns: columns1.base, output: activation1.base)
    reluForward(activation1.base, count: activation1.count)
    maxPool2x2Forward(
      activation1.base, height: s.conv1.outHeight, width: s.conv1.outWidth,
      channels: s.conv1.outChannels, output: pooled1.base)
    conv3x3Forward(
      input: pooled1.base, shape: s.conv2, weights: p + s.conv2Weight, bias: p + s.conv2Bias,
      columns: columns2.base, output: activation2.base)
    reluForward(activation2.base, count: activation2.count)
    maxPool2x2Forward(
      activation2.base, height: s.conv2.outHeight, width: s.conv2.outWidth,
      channels: s.conv2.outChannels, output: pooled2.base)
    denseForward(
      input: pooled2.base, inputs: s.features, weights: p + s.denseWeight,
      bias: p + s.denseBias, outputs: s.classes, output: logits.base)
    return UnsafeBufferPointer(start: logits.base, count: s.classes)
  }

  /// Prepares per-step state that depends only on the parameters (the transposed conv2
  /// weights). Call once after the parameters change and before `backward`.
  /// Cost: O(conv2 weights).
  public func prepareBackward(parameters p: UnsafePointer<Float>) {
    guard trainsConv1 else { return }
    transposeWeights(p + spec.conv2Weight, shape: spec.conv2, into: conv2WeightsTransposed.base)
  }

  /// After `forward` on an image, adds that image's gradient of the cross-entropy loss
  /// to `gradient` (laid out like the parameters) and returns the loss. Frozen layers'
  /// gradients are neither computed nor written. Cost: ≈ 9.4 MFLOP with nothing frozen,
  /// ≈ 0.03 MFLOP with only the dense head trainable.
  public func backward(
    label: Int, parameters p: UnsafePointer<Float>, gradient g: UnsafeMutablePointer<Float>
  ) -> Float {
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
      inputGradient: activation2Gradient.base)
    reluBackward(
      activation: activation2.base, gradient: activation2Gradient.base,
      count: activation2.count)
    if trainsConv2 {
      conv3x3WeightGradient(
        columns: columns2.base, outputGradient: activation2Gradient.base, shape: s.conv2,
        weightGradient: g + s.conv2Weight, biasGradient: g + s.conv2Bias)
    }
    guard trainsConv1 else { return loss }
    conv3x3InputGradient(
      outputGradient: activation2Gradient.base, transposedWeights: conv2WeightsTransposed.base,
      shape: s.conv2, columnGradient: columns2Gradient.base, inputGradient: pooled1Gradient.base)
    maxPool2x2Backward(
      input: activation1.base, output: pooled1.base, outputGradient: pooled1Gradient.base,
      height: s.conv1.outHeight, width: s.conv1.outWidth, channels: s.conv1.outChannels,
      inputGradient: activation1Gradient.base)
    reluBackward(
      activation: activation1.base, gradient: activation1Gradient.base,
      count: activation1.count)
    conv3x3WeightGradient(
      columns: columns1.base, outputGradient: activation1Gradient.base, shape: s.conv1,
      weightGradient: g + s.conv1Weight, biasGradient: g + s.conv1Bias)
    return loss
  }

  /// Forward pass on one image; returns its cross-entropy loss against `label` and the
  /// predicted class. Cost: ≈ 4.9 MFLOP.
  public func evaluate(image: UnsafePointer<UInt8>, label: Int, parameters: UnsafePointer<Float>)
    -> (loss: Float, prediction: Int)
  {
    let logits = forward(image: image, parameters: parameters)
    let loss = softmaxCrossEntropy(
      logits: logits.baseAddress!, classes: spec.classes, label: label, gradient: logitGradient.base)
    return (loss, argmax(logits.baseAddress!, count: spec.classes))
  }
}
