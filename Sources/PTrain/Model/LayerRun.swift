/// One planned layer as a replica's passes need it: the kernel to run, its shapes, its
/// parameters' offsets, its scratch and prepared filters. Plain values and pointers only.
struct LayerRun {
  let kind: LayerOperation
  /// The layer whose output it reads (-1: the image), and for a residual block's
  /// addition the shortcut's output it adds (else -1).
  let input: Int, shortcut: Int
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
  /// A trainable dense layer's kept images (see `Replica.denseImages`), and the stack of
  /// its weight gradient over a block of shards (`denseTreeWeightGradient`).
  let denseInputs, denseGradients, denseTreeStack: UnsafeMutablePointer<Float>?
  let winogradForward, winogradFlipped, transposed: UnsafePointer<Float>?

  /// The run of `layer` of `plan`, where `fusesReLU` says which layers apply the ReLU
  /// above them as they store, and `reluGradientInMaxPool` whether a max-pool takes the
  /// gradient of the ReLU below it (see `Fusions`).
  init(
    _ layer: ModelPlan.PlannedLayer, plan: ModelPlan, trains: Bool, needsInputGradient: Bool, fusesReLU: [Bool],
    reluGradientInMaxPool: Bool, scratch: [Replica.Scratch: UnsafeMutablePointer<Float>], prepared: PreparedWeights
  ) {
    let i = layer.index
    kind = layer.layer.kind.operation(layer)
    input = layer.input0
    shortcut = layer.inputs.count > 1 ? layer.inputs[1] : -1
    self.trains = trains
    self.needsInputGradient = needsInputGradient
    weight = layer.weight?.offset ?? -1
    bias = layer.bias?.offset ?? -1
    runningMean = layer.runningMean?.offset ?? -1
    runningVariance = layer.runningVariance?.offset ?? -1
    self.fusesReLU = fusesReLU[i]
    fusedIntoBelow = layer.layer == .relu && layer.input0 >= 0 && fusesReLU[layer.input0]
    let reader = plan.soleConsumer(of: i)
    maxPoolAbove =
      reluGradientInMaxPool && layer.layer == .relu
      && reader.map { plan.layers[$0].layer.kind is MaxPoolLayer } ?? false
    let below = plan.soleInput(of: i)
    reluBelow =
      reluGradientInMaxPool && layer.layer.kind is MaxPoolLayer && below.map { plan.layers[$0].layer == .relu } ?? false
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
    denseTreeStack = scratch[.denseTreeStack]
    winogradForward = prepared.winograd[i].map { UnsafePointer($0.forward.base) }
    winogradFlipped = prepared.winograd[i].flatMap { $0.keepsFlipped ? UnsafePointer($0.flipped.base) : nil }
    transposed = prepared.transposed[i].map { UnsafePointer($0.base) }
  }
}
