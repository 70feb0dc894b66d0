extension ModelSpec {
  /// The layers that hold parameters. `torchIndex` is the layer's index in the
  /// equivalent PyTorch `nn.Sequential`, which names its tensors `0.weight`, `3.bias`, ….
  public enum Layer: String, CaseIterable, Sendable, Hashable, Comparable {
    case conv1, conv2, dense

    public var torchIndex: Int {
      switch self {
      case .conv1: 0
      case .conv2: 3
      case .dense: 7
      }
    }

    /// The layer called `name` (`conv2`) or numbered `name` in PyTorch's Sequential (`3`).
    public init(named name: String) throws {
      if let layer = Layer(rawValue: name) ?? Layer.allCases.first(where: { String($0.torchIndex) == name }) {
        self = layer
        return
      }
      let known = Layer.allCases.map { "\($0.rawValue) (\($0.torchIndex))" }.joined(separator: ", ")
      throw PTrainError("there is no layer \"\(name)\"; the layers are \(known)")
    }

    public static func < (lhs: Layer, rhs: Layer) -> Bool { lhs.torchIndex < rhs.torchIndex }
  }

  /// The weight and bias tensors of `layer`.
  public func tensors(of layer: Layer) -> [Tensor] {
    tensors.filter { $0.layer == layer }
  }

  /// The contiguous parameter range of `layer` (its weight, then its bias).
  public func parameterRange(of layer: Layer) -> Range<Int> {
    let own = tensors(of: layer)
    return own.first!.offset..<(own.last!.offset + own.last!.count)
  }

  /// The tensor that holds parameter `index`.
  public func tensor(containing index: Int) -> Tensor? {
    tensors.first { ($0.offset..<($0.offset + $0.count)).contains(index) }
  }
}
