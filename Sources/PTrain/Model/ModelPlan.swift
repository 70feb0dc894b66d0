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
/// second buffer (`stateTensors`), get no gradient and are not updated by the optimizer.
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

  /// One layer, planned. A residual block is planned as its body's layers, its shortcut's,
  /// then the layer that adds them (see `ResidualLayer`), each a `PlannedLayer`.
  public struct PlannedLayer: Sendable {
    /// The index in `ModelPlan.layers`: the model's index where no residual block lies
    /// before it.
    public let index: Int
    public let layer: Layer
    /// The module path in PyTorch's `nn.Sequential`, which names the layer's tensors:
    /// `3`, or `3.body.1` and `3.shortcut.0` inside the block at index 3 (whose addition's
    /// path is `3`).
    public let torchPath: String
    /// A name for messages and `--freeze`: the kind, numbered when the model has several
    /// (`conv1`, `conv2`, `dense`).
    public let name: String
    public let input: ImageShape, output: ImageShape
    /// The layers whose outputs it reads (-1: the model's input): the layer before it, or
    /// for a residual block's addition the body's last layer and the shortcut's (or the
    /// block's input).
    package let inputs: [Int]
    /// Whether the input and output are vectors (after flatten) rather than maps.
    package let inputIsFlat: Bool, outputIsFlat: Bool
    public let kernel: Kernel?
    public let weight: Tensor?, bias: Tensor?
    /// A BatchNorm's running statistics, in the state buffer.
    public let runningMean: Tensor?, runningVariance: Tensor?
    /// Whether the layer applies the ReLU that follows it as it stores its output (the
    /// ReLU being the only reader of its output).
    package internal(set) var fusesReLU: Bool
    /// For a dense layer or a BatchNorm on a vector, the map its input was flattened from
    /// (for PyTorch's C,H,W order of the features), or nil.
    package let flattenedMap: ImageShape?
    /// Multiply-adds ×2 of one image's training (forward, weight gradient and, when a
    /// layer below has parameters, input gradient): as the kernel does them, and as a
    /// direct convolution would.
    public let executedTrainingFlops: Int, directTrainingFlops: Int

    /// The one layer it reads.
    package var input0: Int { inputs[0] }
    /// The layer's parameter range in the flat buffer (empty without parameters).
    public var parameterRange: Range<Int> {
      guard let first = weight ?? bias else { return 0..<0 }
      return first.offset..<((bias ?? first).offset + (bias ?? first).count)
    }
    public var hasParameters: Bool { weight != nil || bias != nil }
    /// PyTorch's module for the layer, with its arguments: `Conv2d(1, 32, 3)`.
    package var torchModule: String { layer.kind.torchModule(self) }
    /// The layer in the model text's words; a residual block's addition says what it adds.
    public var text: String {
      guard let (_, shortcut) = layer.residualBranches else { return layer.text }
      return shortcut.isEmpty ? "add: body + block input" : "add: body + shortcut"
    }
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
    var planner = Planner(definition: definition)
    var current = Planner.Output(node: -1, shape: definition.input, isFlat: false, flattenedFrom: nil)
    for (index, layer) in definition.layers.enumerated() {
      guard let (body, shortcut) = layer.residualBranches else {
        current = try planner.add(layer, torchPath: "\(index)", after: current)
        continue
      }
      guard !current.isFlat else {
        throw PTrainError(
          "layer \(index) (\(layer.text)) needs a map, not a flat vector of \(current.shape.count) values")
      }
      guard !body.isEmpty else { throw PTrainError("layer \(index) (\(layer.text)) has no layers in its body") }
      var bodyOutput = current
      for (position, inner) in body.enumerated() {
        bodyOutput = try planner.add(inner, torchPath: "\(index).body.\(position)", after: bodyOutput)
      }
      var shortcutOutput = current
      for (position, inner) in shortcut.enumerated() {
        shortcutOutput = try planner.add(inner, torchPath: "\(index).shortcut.\(position)", after: shortcutOutput)
      }
      current = try planner.add(layer, torchPath: "\(index)", after: bodyOutput, adding: shortcutOutput)
    }
    guard let head = definition.layers.last?.kind as? DenseLayer else {
      throw PTrainError("the model must end in a dense layer whose outputs are the classes (for example dense 10)")
    }
    guard (2...4096).contains(head.units) else {
      throw PTrainError("the last dense layer has \(head.units) outputs; a model needs 2 to 4096 classes")
    }
    var planned = planner.layers
    var consumers = [[Int]](repeating: [], count: planned.count)
    for layer in planned { for input in layer.inputs where input >= 0 { consumers[input].append(layer.index) } }
    for i in planned.indices where planned[i].layer.kind.storesReLU && consumers[i] == [i + 1] {
      planned[i].fusesReLU = planned[i + 1].layer == .relu
    }
    layers = planned
    self.consumers = consumers
    tensors = planned.flatMap { [$0.weight, $0.bias].compactMap { $0 } }
    stateTensors = planned.flatMap { [$0.runningMean, $0.runningVariance].compactMap { $0 } }
    batchNormLayers = planned.filter { $0.layer.kind is BatchNormLayer }.map(\.index)
    isSequential = planned.allSatisfy { $0.inputs == [$0.index - 1] }
  }

  /// Per layer, the layers that read its output, in order.
  package let consumers: [[Int]]
  /// Whether every layer reads the one before it only (no residual block).
  package let isSequential: Bool

  /// The one layer that reads layer `i`'s output and reads nothing else, or nil.
  package func soleConsumer(of i: Int) -> Int? {
    guard i >= 0, consumers[i].count == 1, layers[consumers[i][0]].inputs.count == 1 else { return nil }
    return consumers[i][0]
  }

  /// The one layer that layer `i` reads, when `i` is the only reader of its output, or nil.
  package func soleInput(of i: Int) -> Int? {
    let inputs = layers[i].inputs
    guard inputs.count == 1, inputs[0] >= 0, consumers[inputs[0]] == [i] else { return nil }
    return inputs[0]
  }

  /// Per layer, with the layers at `frozen` getting no gradients: whether its input
  /// gradient is needed, that is whether a layer with trainable parameters lies among
  /// those it reads, directly or through others. Backward stops there. Cost: O(layers).
  package func inputGradients(frozen: Set<Int>) -> [Bool] {
    var needed = [Bool](repeating: false, count: layers.count)
    for layer in layers {
      needed[layer.index] = layer.inputs.contains {
        $0 >= 0 && (needed[$0] || (layers[$0].hasParameters && !frozen.contains($0)))
      }
    }
    return needed
  }

  /// The model as PyTorch's `nn.Sequential`, a residual block as `Residual(body=…,
  /// shortcut=…)` with two `nn.Sequential` children (see `tools/ptrain_model.py`).
  package var torchSequential: String {
    let byPath = Dictionary(uniqueKeysWithValues: layers.map { ($0.torchPath, $0.torchModule) })
    let modules = definition.layers.indices.map { k in
      guard let (body, shortcut) = definition.layers[k].residualBranches else { return byPath["\(k)"]! }
      let children = { (name: String, count: Int) in
        (0..<count).map { byPath["\(k).\(name).\($0)"]! }.joined(separator: ", ")
      }
      return "Residual(body=nn.Sequential(\(children("body", body.count))), "
        + "shortcut=nn.Sequential(\(children("shortcut", shortcut.count))))"
    }
    return "nn.Sequential(" + modules.joined(separator: ", ") + ")"
  }

  /// For a layer without a kernel that does others' work in its pass, what it does: a
  /// residual block's addition that applies the body's last BatchNorm
  /// (`Fusions.batchNormInAddition`) or the ReLU after the block (`Fusions.reluOnStore`).
  public func fusedChoice(_ layer: PlannedLayer) -> String? {
    guard layer.layer.residualBranches != nil else { return nil }
    let body = layer.inputs[0]
    let appliesBatchNorm = layers[body].layer == .batchNorm && consumers[body] == [layer.index]
    return (appliesBatchNorm ? "batchnorm + add" : "add") + (layer.fusesReLU ? " + ReLU, one pass" : "")
  }

  /// The layers with parameters.
  public var parameterLayers: [PlannedLayer] { layers.filter(\.hasParameters) }

  /// The layer called `name` (`conv2`, as `summary` names it) or numbered `name` (`3`);
  /// it must have parameters, since only those can be frozen.
  package func parameterLayer(named name: String) throws -> Int {
    let trimmed = String(name.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    if let found = layers.first(where: { $0.name == trimmed || $0.torchPath == trimmed }), found.hasParameters {
      return found.index
    }
    let known = parameterLayers.map { "\($0.name) (\($0.torchPath))" }.joined(separator: ", ")
    throw PTrainError("there is no layer with parameters called \"\(trimmed)\"; they are \(known)")
  }

  /// The tensor called `name` (PyTorch's name), if the model has one. Its `shape` and
  /// `range` are ptrain's layout; `torchValues(of:in:)` gives it in PyTorch's.
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
