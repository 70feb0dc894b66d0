/// One layer being planned: what `ModelPlan` knows of its input, and what the layer's kind
/// sets in `LayerKind.plan` (its output, tensors, kernel and FLOP). Tensors are laid out
/// in the order the kind asks for them, after the layers before.
package struct LayerPlanning {
  /// The layer's index in the plan (`ModelPlan.layers`).
  package let index: Int
  /// The module path of the layer in PyTorch's `nn.Sequential` (its index, or
  /// `K.body.I` inside a residual block), which names its tensors.
  package let torchPath: String
  package let input: ImageShape
  /// A residual block's addition: the shortcut's output, which it adds to `input` (the
  /// body's output).
  package let shortcutInput: (shape: ImageShape, isFlat: Bool)?
  /// Whether the input is a vector (after flatten) rather than a map.
  package let inputIsFlat: Bool
  /// The map that a flatten below made the input from, until a dense layer consumes it.
  package var flattenedFrom: ImageShape?
  /// Whether the layer's input gradient is needed (a layer with parameters lies below).
  package let needsInputGradient: Bool

  /// The output: the input's shape and form unless the kind changes them.
  package var output: ImageShape
  package var outputIsFlat: Bool
  package private(set) var weight: ModelPlan.Tensor?, bias: ModelPlan.Tensor?
  package private(set) var runningMean: ModelPlan.Tensor?, runningVariance: ModelPlan.Tensor?
  package var kernel: ModelPlan.Kernel?
  /// For a dense layer or a BatchNorm on a vector, the map the vector was flattened from.
  package var flattenedMap: ImageShape?
  /// Multiply-adds ×2 of one image's training, as the kernel does them and as a direct
  /// computation would (see `ModelPlan.PlannedLayer`).
  package var executedFlops = 0, directFlops = 0

  /// Where the next parameter and state tensors start in their buffers.
  private(set) var parameterOffset: Int, stateOffset: Int
  private let layerText: String

  init(
    index: Int, torchPath: String, layer: Layer, input: ImageShape, inputIsFlat: Bool, flattenedFrom: ImageShape?,
    shortcutInput: (shape: ImageShape, isFlat: Bool)? = nil, needsInputGradient: Bool, parameterOffset: Int,
    stateOffset: Int
  ) {
    self.index = index
    self.torchPath = torchPath
    self.input = input
    self.shortcutInput = shortcutInput
    self.inputIsFlat = inputIsFlat
    self.flattenedFrom = flattenedFrom
    self.needsInputGradient = needsInputGradient
    output = input
    outputIsFlat = inputIsFlat
    self.parameterOffset = parameterOffset
    self.stateOffset = stateOffset
    layerText = layer.text
  }

  /// The values per channel of the input: a map's channels, or a vector's every value.
  package var inputChannels: Int { inputIsFlat ? input.count : input.channels }

  /// A one-line error: the layer (by its PyTorch path), what is wrong, and its input.
  package func failure(_ what: String) -> PTrainError {
    let input = inputIsFlat ? "of \(input.count) values" : "\(input)"
    return PTrainError(
      "layer \(torchPath) (\(layerText)) \(what)" + (shortcutInput == nil ? ", on its input \(input)" : ""))
  }

  /// Throws unless the input is a map; `hint` says what to do instead.
  package func requireMap(_ hint: String = "") throws {
    guard !inputIsFlat else { throw failure("needs a map, not a flat vector" + hint) }
  }

  /// The layer's weight (a BatchNorm's γ), laid out after the tensors before it.
  package mutating func addWeight(_ shape: [Int]) { weight = parameter("weight", shape) }
  /// The layer's bias (a BatchNorm's β), after its weight.
  package mutating func addBias(_ shape: [Int]) { bias = parameter("bias", shape) }

  /// The running mean and variance of `channels` values, in the state buffer.
  package mutating func addRunningStatistics(channels: Int) {
    runningMean = ModelPlan.Tensor(
      name: "\(torchPath).running_mean", shape: [channels], offset: stateOffset, layer: index)
    runningVariance = ModelPlan.Tensor(
      name: "\(torchPath).running_var", shape: [channels], offset: stateOffset + channels, layer: index)
    stateOffset += 2 * channels
  }

  private mutating func parameter(_ suffix: String, _ shape: [Int]) -> ModelPlan.Tensor {
    defer { parameterOffset += shape.reduce(1, *) }
    return ModelPlan.Tensor(name: "\(torchPath).\(suffix)", shape: shape, offset: parameterOffset, layer: index)
  }
}
