/// A model definition compiled for training: every layer's input and output shape, the
/// kernel that runs it, its place in the flat parameter buffer, and its names.
///
/// Parameters live in one flat Float buffer, layer after layer in `nn.Sequential` order,
/// each layer's weight before its bias (a BatchNorm's scale γ before its shift β):
///
/// | layer | weight | layout |
/// |---|---|---|
/// | conv | K×K×in×out | HWIO |
/// | dense | out×in | [out][in], `in` in the H,W,C order of the map it was flattened from |
/// | batchnorm | C (γ), C (β) | |
///
/// BatchNorm's running mean and variance are state, not parameters: they live in a
/// second buffer (`stateTensors`), get no gradient and are not updated by Adam.
/// `parameters_sha256` hashes the parameters' little-endian bytes in this order.
public struct ModelPlan: Sendable {
  /// How a layer's arithmetic is done, chosen by its shape.
  public enum Kernel: String, Sendable {
    /// 3×3, stride 1, channels in multiples of 16: Winograd F(2×2, 3×3) GEMMs.
    case winograd = "Winograd F(2x2,3x3)"
    /// As `winograd`, on maps of at least 8×8: Winograd F(4×4, 3×3), 1.78× fewer
    /// multiplies than F(2×2, 3×3) where the tiles fit the map.
    case winograd4 = "Winograd F(4x4,3x3)"
    /// As `winograd4`, where F(5×5, 3×3)'s 7×7 tiles cover the map with fewer GEMM FLOP
    /// than 6×6 ones (a 14×14 map: 9 tiles of 49 points against 16 of 36).
    case winograd5 = "Winograd F(5x5,3x3)"
    /// 3×3, stride 1, one input channel, outputs in multiples of 32, no input gradient
    /// needed: filters in registers.
    case directOneChannel = "direct (1 channel)"
    /// Any other convolution: the patches as rows of a matrix, times the filters.
    case im2colGemm = "im2col+GEMM"
    /// A dense layer: a matrix-vector product per image.
    case gemv = "GEMV"

    /// The output tile of a Winograd kernel (2, 4 or 5), or nil.
    package var winogradOutputTile: Int? {
      switch self {
      case .winograd: 2
      case .winograd4: 4
      case .winograd5: 5
      default: nil
      }
    }
  }

  /// One named tensor of the parameter buffer (or of the state buffer).
  public struct Tensor: Sendable, Equatable {
    /// PyTorch's name in the equivalent `nn.Sequential`: `3.weight`, `1.running_mean`.
    public let name: String
    /// The shape in ptrain's layout (HWIO for a convolution's weight).
    public let shape: [Int]
    public let offset: Int
    /// The index of its layer in `ModelPlan.layers` (and in `nn.Sequential`).
    public let layer: Int
    public var count: Int { shape.reduce(1, *) }
    public var range: Range<Int> { offset..<(offset + count) }
  }

  /// One layer, planned.
  public struct PlannedLayer: Sendable {
    /// The index in the model and in PyTorch's `nn.Sequential`.
    public let index: Int
    public let layer: Layer
    /// A name for messages and `--freeze`: the kind, numbered when the model has several
    /// (`conv1`, `conv2`, `dense`).
    public let name: String
    public let input: ImageShape, output: ImageShape
    /// Whether the input and output are vectors (after flatten) rather than maps.
    package let inputIsFlat: Bool, outputIsFlat: Bool
    public let kernel: Kernel?
    public let weight: Tensor?, bias: Tensor?
    /// A BatchNorm's running statistics, in the state buffer.
    public let runningMean: Tensor?, runningVariance: Tensor?
    /// Whether the layer applies the ReLU that follows it as it stores its output.
    package let fusesReLU: Bool
    /// For a dense layer or a BatchNorm on a vector, the map its input was flattened from
    /// (for PyTorch's C,H,W order of the features), or nil.
    package let flattenedMap: ImageShape?
    /// Multiply-adds ×2 of one image's training (forward, weight gradient and, when a
    /// layer below has parameters, input gradient): as the kernel does them, and as a
    /// direct convolution would.
    public let executedTrainingFlops: Int, directTrainingFlops: Int

    /// The layer's parameter range in the flat buffer (empty without parameters).
    public var parameterRange: Range<Int> {
      guard let first = weight ?? bias else { return 0..<0 }
      return first.offset..<((bias ?? first).offset + (bias ?? first).count)
    }
    public var hasParameters: Bool { weight != nil || bias != nil }
    /// PyTorch's module for the layer, with its arguments: `Conv2d(1, 32, 3)`.
    package var torchModule: String { layer.kind.torchModule(self) }
  }

  public let definition: ModelDefinition
  public let layers: [PlannedLayer]
  /// The parameters, in buffer order.
  public let tensors: [Tensor]
  /// BatchNorm's running means and variances, in state-buffer order.
  public let stateTensors: [Tensor]

  public var parameterCount: Int { tensors.last.map { $0.offset + $0.count } ?? 0 }
  public var stateCount: Int { stateTensors.last.map { $0.offset + $0.count } ?? 0 }
  public var input: ImageShape { definition.input }
  /// The classes: the outputs of the last (dense) layer.
  public var classes: Int { layers.last!.output.count }
  /// The indices of the BatchNorm layers, whose batch statistics synchronise the step.
  public let batchNormLayers: [Int]
  /// The epsilon added to a BatchNorm's variance and the weight of each batch in its
  /// running statistics, as PyTorch's defaults.
  public static let batchNormEpsilon = BatchNormLayer.epsilon
  public static let batchNormMomentum = BatchNormLayer.momentum

  /// FLOP of one training image, summed over the layers (see `PlannedLayer`).
  public var executedTrainingFlopsPerImage: Int { layers.reduce(0) { $0 + $1.executedTrainingFlops } }
  public var trainingFlopsPerImage: Int { layers.reduce(0) { $0 + $1.directTrainingFlops } }

  /// Plans `definition`, throwing a one-line error naming the first layer that does not
  /// fit its input. Cost: O(layers).
  public init(_ definition: ModelDefinition) throws {
    self.definition = definition
    let kinds = definition.layers.map(\.word)
    var counts: [String: Int] = [:]
    for kind in kinds { counts[kind, default: 0] += 1 }
    var seen: [String: Int] = [:]
    var shape = definition.input
    var flat = false
    var flattenedFrom: ImageShape?
    var offset = 0
    var stateOffset = 0
    var tensors: [Tensor] = []
    var state: [Tensor] = []
    var planned: [PlannedLayer] = []
    for (index, layer) in definition.layers.enumerated() {
      let kind = kinds[index]
      seen[kind, default: 0] += 1
      // A layer's input gradient is needed when a layer with parameters lies below it.
      var planning = LayerPlanning(
        index: index, layer: layer, input: shape, inputIsFlat: flat, flattenedFrom: flattenedFrom,
        needsInputGradient: !tensors.isEmpty, parameterOffset: offset, stateOffset: stateOffset)
      try layer.kind.plan(&planning)
      let nextIsReLU = index + 1 < definition.layers.count && definition.layers[index + 1] == .relu
      let done = PlannedLayer(
        index: index, layer: layer, name: counts[kind]! > 1 ? "\(kind)\(seen[kind]!)" : kind, input: shape,
        output: planning.output, inputIsFlat: flat, outputIsFlat: planning.outputIsFlat, kernel: planning.kernel,
        weight: planning.weight, bias: planning.bias, runningMean: planning.runningMean,
        runningVariance: planning.runningVariance, fusesReLU: layer.kind.storesReLU && nextIsReLU,
        flattenedMap: planning.flattenedMap, executedTrainingFlops: planning.executedFlops,
        directTrainingFlops: planning.directFlops)
      (shape, flat, flattenedFrom) = (planning.output, planning.outputIsFlat, planning.flattenedFrom)
      (offset, stateOffset) = (planning.parameterOffset, planning.stateOffset)
      tensors += [done.weight, done.bias].compactMap { $0 }
      state += [done.runningMean, done.runningVariance].compactMap { $0 }
      planned.append(done)
    }
    guard let head = definition.layers.last?.kind as? DenseLayer else {
      throw PTrainError("the model must end in a dense layer whose outputs are the classes (for example dense 10)")
    }
    guard (2...4096).contains(head.units) else {
      throw PTrainError("the last dense layer has \(head.units) outputs; a model needs 2 to 4096 classes")
    }
    layers = planned
    self.tensors = tensors
    stateTensors = state
    batchNormLayers = planned.filter { $0.layer.kind is BatchNormLayer }.map(\.index)
  }

  /// Per layer, with the layers at `frozen` getting no gradients: whether its input
  /// gradient is needed, that is whether a layer with trainable parameters lies below it.
  /// Backward stops there. Cost: O(layers).
  package func inputGradients(frozen: Set<Int>) -> [Bool] {
    let lowest = layers.first { $0.hasParameters && !frozen.contains($0.index) }?.index ?? layers.count
    return layers.map { $0.index > lowest }
  }

  /// The layers with parameters.
  public var parameterLayers: [PlannedLayer] { layers.filter(\.hasParameters) }

  /// The layer called `name` (`conv2`, as `summary` names it) or numbered `name` (`3`);
  /// it must have parameters, since only those can be frozen.
  package func parameterLayer(named name: String) throws -> Int {
    let trimmed = String(name.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    if let found = layers.first(where: { $0.name == trimmed || String($0.index) == trimmed }), found.hasParameters {
      return found.index
    }
    let known = parameterLayers.map { "\($0.name) (\($0.index))" }.joined(separator: ", ")
    throw PTrainError("there is no layer with parameters called \"\(trimmed)\"; they are \(known)")
  }

  /// The tensor called `name` (PyTorch's name), if the model has one.
  public func tensor(_ name: String) -> Tensor? { tensors.first { $0.name == name } }

  /// The tensor that holds parameter `index`.
  package func tensor(containing index: Int) -> Tensor? { tensors.first { $0.range.contains(index) } }

  /// Initial parameters, tensor by tensor in buffer order, each layer's as its kind
  /// sets them: Keras-style Glorot-uniform convolution and dense kernels drawn from
  /// `generator`, zero biases, and BatchNorm scales of 1. Cost: O(parameterCount).
  package func initialParameters(using generator: inout SeededGenerator) -> [Float] {
    var values = [Float](repeating: 0, count: parameterCount)
    for planned in layers { planned.layer.kind.initialize(planned, parameters: &values, using: &generator) }
    return values
  }

  /// The initial state: running means of 0 and variances of 1, as PyTorch starts them.
  package var initialState: [Float] {
    var values = [Float](repeating: 0, count: stateCount)
    for planned in layers { planned.layer.kind.initialize(planned, state: &values) }
    return values
  }
}
