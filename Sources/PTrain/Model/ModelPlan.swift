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
    package var torchModule: String {
      switch layer {
      case .conv(let filters, let kernel, let stride, let padding, let bias):
        var arguments = ["\(input.channels)", "\(filters)", "\(kernel)"]
        if stride != 1 { arguments.append("stride=\(stride)") }
        if padding == .same { arguments.append("padding=\((kernel - 1) / 2)") }
        if !bias { arguments.append("bias=False") }
        return "Conv2d(\(arguments.joined(separator: ", ")))"
      case .batchNorm: return inputIsFlat ? "BatchNorm1d(\(input.count))" : "BatchNorm2d(\(input.channels))"
      case .relu: return "ReLU()"
      case .maxPool(let size, let stride): return "MaxPool2d(\(size)" + (stride != size ? ", stride=\(stride!))" : ")")
      case .avgPool(let size, let stride): return "AvgPool2d(\(size)" + (stride != size ? ", stride=\(stride!))" : ")")
      case .globalAvgPool: return "AdaptiveAvgPool2d(1)"
      case .flatten: return "Flatten()"
      case .dense(let units, let bias): return "Linear(\(input.count), \(units)" + (bias ? ")" : ", bias=False)")
      case .dropout(let rate): return "Dropout(\(rate))"
      }
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
  public static let batchNormEpsilon: Float = 1e-5
  public static let batchNormMomentum: Float = 0.1

  /// FLOP of one training image, summed over the layers (see `PlannedLayer`).
  public var executedTrainingFlopsPerImage: Int { layers.reduce(0) { $0 + $1.executedTrainingFlops } }
  public var trainingFlopsPerImage: Int { layers.reduce(0) { $0 + $1.directTrainingFlops } }

  /// Plans `definition`, throwing a one-line error naming the first layer that does not
  /// fit its input. Cost: O(layers).
  public init(_ definition: ModelDefinition) throws {
    self.definition = definition
    let kinds = definition.layers.map(Self.kindName)
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
    let firstWithParameters = definition.layers.firstIndex { Self.hasParameters($0) }
    for (index, layer) in definition.layers.enumerated() {
      let kind = kinds[index]
      seen[kind, default: 0] += 1
      let name = counts[kind]! > 1 ? "\(kind)\(seen[kind]!)" : kind
      func failure(_ what: String) -> PTrainError {
        PTrainError(
          "layer \(index) (\(layer.text)) \(what), on its input \(flat ? "of \(shape.count) values" : "\(shape)")")
      }
      func tensor(_ suffix: String, _ dimensions: [Int]) -> Tensor {
        defer { offset += dimensions.reduce(1, *) }
        return Tensor(name: "\(index).\(suffix)", shape: dimensions, offset: offset, layer: index)
      }
      let input = shape
      let inputIsFlat = flat
      var weight: Tensor?
      var bias: Tensor?
      var runningMean: Tensor?
      var runningVariance: Tensor?
      var kernel: Kernel?
      var flattenedMap: ImageShape?
      var executed = 0
      var direct = 0
      // A layer's input gradient is needed when a layer with parameters lies below it.
      let needsInputGradient = (firstWithParameters ?? index) < index
      switch layer {
      case .conv(let filters, let size, let stride, let padding, let hasBias):
        guard !flat else { throw failure("needs a map, not a flat vector (put it before flatten)") }
        let pad = padding == .same ? (size - 1) / 2 : 0
        guard input.height + 2 * pad >= size, input.width + 2 * pad >= size else {
          throw failure("has a \(size)x\(size) kernel larger than the map")
        }
        guard stride <= max(input.height, input.width) else { throw failure("has a stride larger than the map") }
        shape = ImageShape(
          height: (input.height + 2 * pad - size) / stride + 1, width: (input.width + 2 * pad - size) / stride + 1,
          channels: filters)
        weight = tensor("weight", [size, size, input.channels, filters])
        if hasBias { bias = tensor("bias", [filters]) }
        let macs = shape.height * shape.width * size * size * input.channels * filters
        let passes = needsInputGradient ? 3 : 2
        direct = 2 * macs * passes
        if size == 3 && stride == 1 && input.channels % 16 == 0 && filters % 16 == 0 {
          // F(4×4, 3×3) from 8×8 maps up: 4 or more tiles per image, so that a shard's
          // images (one GEMM per point for all of them) make GEMMs long enough to run near
          // the FMA peak. On smaller maps its 4×4 tiles would mostly pad. F(5×5, 3×3) where
          // its tiles need fewer point multiplies still (ties go to the cheaper transforms).
          func tiles(_ h: Int, _ w: Int, _ tile: Int) -> Int { ((h + tile - 1) / tile) * ((w + tile - 1) / tile) }
          func flops(_ tile: Int) -> Int {
            let pointMACs = (tile + 2) * (tile + 2) * input.channels * filters
            return 2 * pointMACs
              * (2 * tiles(shape.height, shape.width, tile)
                + (needsInputGradient ? tiles(input.height, input.width, tile) : 0))
          }
          let large = shape.height >= 8 && shape.width >= 8
          let tile = large ? (flops(5) < flops(4) ? 5 : 4) : 2
          kernel = tile == 5 ? .winograd5 : tile == 4 ? .winograd4 : .winograd
          executed = flops(tile)
        } else {
          let oneChannel = size == 3 && stride == 1 && input.channels == 1 && filters % 32 == 0 && !needsInputGradient
          kernel = oneChannel ? .directOneChannel : .im2colGemm
          executed = direct
        }
      case .batchNorm:
        let channels = flat ? input.count : input.channels
        flattenedMap = flat ? flattenedFrom : nil
        weight = tensor("weight", [channels])
        bias = tensor("bias", [channels])
        runningMean = Tensor(name: "\(index).running_mean", shape: [channels], offset: stateOffset, layer: index)
        runningVariance = Tensor(
          name: "\(index).running_var", shape: [channels], offset: stateOffset + channels, layer: index)
        stateOffset += 2 * channels
      case .relu, .dropout:
        break
      case .maxPool(let size, let stride), .avgPool(let size, let stride):
        guard !flat else { throw failure("needs a map, not a flat vector") }
        let step = stride ?? size
        guard input.height >= size, input.width >= size else { throw failure("would pool the map below 1x1") }
        shape = ImageShape(
          height: (input.height - size) / step + 1, width: (input.width - size) / step + 1, channels: input.channels)
      case .globalAvgPool:
        guard !flat else { throw failure("needs a map, not a flat vector") }
        shape = ImageShape(height: 1, width: 1, channels: input.channels)
      case .flatten:
        // Layers between flatten and dense (relu, dropout, batchnorm) keep the order.
        if !flat { flattenedFrom = input }
        flat = true
        shape = ImageShape(height: 1, width: 1, channels: input.count)
      case .dense(let units, let hasBias):
        guard flat else { throw failure("needs a flat input; put flatten before it") }
        flattenedMap = flattenedFrom
        flattenedFrom = nil
        weight = tensor("weight", [units, input.count])
        if hasBias { bias = tensor("bias", [units]) }
        shape = ImageShape(height: 1, width: 1, channels: units)
        kernel = .gemv
        direct = 2 * input.count * units * (needsInputGradient ? 3 : 2)
        executed = direct
      }
      let nextIsReLU = index + 1 < definition.layers.count && definition.layers[index + 1] == .relu
      let fuses: Bool
      switch layer {
      case .conv, .dense, .batchNorm: fuses = nextIsReLU
      default: fuses = false
      }
      tensors += [weight, bias].compactMap { $0 }
      state += [runningMean, runningVariance].compactMap { $0 }
      planned.append(
        PlannedLayer(
          index: index, layer: layer, name: name, input: input, output: shape, inputIsFlat: inputIsFlat,
          outputIsFlat: flat, kernel: kernel, weight: weight, bias: bias, runningMean: runningMean,
          runningVariance: runningVariance, fusesReLU: fuses, flattenedMap: flattenedMap,
          executedTrainingFlops: executed, directTrainingFlops: direct))
    }
    guard case .dense(let classes, _) = definition.layers.last else {
      throw PTrainError("the model must end in a dense layer whose outputs are the classes (for example dense 10)")
    }
    guard (2...4096).contains(classes) else {
      throw PTrainError("the last dense layer has \(classes) outputs; a model needs 2 to 4096 classes")
    }
    layers = planned
    self.tensors = tensors
    stateTensors = state
    batchNormLayers = planned.filter { if case .batchNorm = $0.layer { true } else { false } }.map(\.index)
  }

  /// The word for a layer's kind in names: conv, batchnorm, relu, maxpool, …
  static func kindName(_ layer: Layer) -> String {
    String(layer.text.prefix { $0 != " " })
  }

  static func hasParameters(_ layer: Layer) -> Bool {
    switch layer {
    case .conv, .dense, .batchNorm: true
    default: false
    }
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

  /// Keras-style initial parameters: Glorot-uniform convolution and dense kernels
  /// (limit √(6 / (fan in + fan out))) drawn from `generator` tensor by tensor in buffer
  /// order, zero biases, and BatchNorm scales of 1. Cost: O(parameterCount).
  package func initialParameters(using generator: inout SeededGenerator) -> [Float] {
    var values = [Float](repeating: 0, count: parameterCount)
    for planned in layers {
      guard let weight = planned.weight else { continue }
      let fans: (Int, Int)
      switch planned.layer {
      case .conv(let filters, let size, _, _, _):
        fans = (size * size * planned.input.channels, size * size * filters)
      case .dense(let units, _):
        fans = (planned.input.count, units)
      default:
        for i in weight.range { values[i] = 1 }
        continue
      }
      let limit = (6 / Float(fans.0 + fans.1)).squareRoot()
      for i in weight.range { values[i] = (generator.nextUnitFloat() * 2 - 1) * limit }
    }
    return values
  }

  /// The initial state: running means of 0 and variances of 1, as PyTorch starts them.
  package var initialState: [Float] {
    var values = [Float](repeating: 0, count: stateCount)
    for tensor in stateTensors where tensor.name.hasSuffix("running_var") {
      for i in tensor.range { values[i] = 1 }
    }
    return values
  }
}
