/// The height, width and channels of one image (or of one image's feature map).
public struct ImageShape: Sendable, Hashable, CustomStringConvertible {
  public let height: Int, width: Int, channels: Int

  public init(height: Int, width: Int, channels: Int) {
    self.height = height
    self.width = width
    self.channels = channels
  }

  /// Values per image: height × width × channels.
  public var count: Int { height * width * channels }
  /// `28x28x1`: the form the model text and `--input` use.
  public var description: String { "\(height)x\(width)x\(channels)" }
}

/// A sequential model: an input shape and a list of layers, as Keras's `Sequential`
/// takes them. It is data: `text` writes it in a short form a person can type, and
/// `init(parsing:)` reads that form back exactly, so a checkpoint can carry its model.
///
/// ```swift
/// let model = try ModelDefinition(input: ImageShape(height: 28, width: 28, channels: 1), layers: [
///   .conv(32, kernel: 3, padding: .same), .batchNorm, .relu, .maxPool(2),
///   .flatten, .dropout(0.25), .dense(10),
/// ])
/// ```
///
/// The last layer must be a dense layer: its outputs are the classes' logits, which
/// training feeds to softmax cross-entropy.
public struct ModelDefinition: Sendable, Hashable, CustomStringConvertible {
  public let input: ImageShape
  public let layers: [Layer]

  /// A model of `layers` on images of shape `input`. Throws a one-line error when a
  /// layer does not fit its input (see `ModelPlan`). Cost: O(layers).
  public init(input: ImageShape, layers: [Layer]) throws {
    self.input = input
    self.layers = layers
    _ = try ModelPlan(self)
  }

  /// The model text: `input 28x28x1, conv 32 3x3, relu, …, dense 10`.
  public var text: String { (["input \(input)"] + layers.map(\.text)).joined(separator: ", ") }
  public var description: String { text }

  /// The classes: the last dense layer's outputs.
  public var classes: Int {
    (layers.last?.kind as? DenseLayer)?.units ?? 0
  }

  /// The same model with its last dense layer replaced by one of `classes` outputs: a
  /// new head for fine-tuning.
  public func withHead(classes: Int) throws -> ModelDefinition {
    guard let head = layers.last?.kind as? DenseLayer else {
      throw PTrainError("the model does not end in a dense layer")
    }
    return try ModelDefinition(input: input, layers: layers.dropLast() + [.dense(units: classes, bias: head.bias)])
  }

  /// The models ptrain knows by name, with their text.
  public static let builtIn: [(name: String, text: String)] = [
    (
      "mnist-cnn",
      "input 28x28x1, conv 32 3x3, relu, maxpool 2, conv 64 3x3, relu, maxpool 2, flatten, dense 10"
    ),
    (
      "fashion-cnn",
      "input 28x28x1, conv 32 3x3 same nobias, batchnorm, relu, conv 32 3x3 same nobias, batchnorm, relu, "
        + "maxpool 2, dropout 0.25, conv 64 3x3 same nobias, batchnorm, relu, conv 64 3x3 same nobias, batchnorm, "
        + "relu, maxpool 2, dropout 0.25, flatten, dense 128 nobias, batchnorm, relu, dropout 0.5, dense 10"
    ),
    (
      "cifar-cnn",
      "input 32x32x3, conv 32 3x3 same nobias, batchnorm, relu, conv 32 3x3 same nobias, batchnorm, relu, "
        + "maxpool 2, conv 64 3x3 same nobias, batchnorm, relu, conv 64 3x3 same nobias, batchnorm, relu, "
        + "maxpool 2, conv 128 3x3 same nobias, batchnorm, relu, conv 128 3x3 same nobias, batchnorm, relu, "
        + "maxpool 2, globalavgpool, flatten, dense 10"
    ),
  ]

  /// The seed model, ptrain's default: Conv32-Pool-Conv64-Pool-Dense on 28×28×1.
  public static let mnistCNN = try! ModelDefinition(named: "mnist-cnn")

  /// The built-in model called `name`, or nil.
  public init(named name: String) throws {
    guard let found = Self.builtIn.first(where: { $0.name == name }) else {
      let names = Self.builtIn.map(\.name).joined(separator: ", ")
      throw PTrainError("there is no built-in model \"\(name)\"; the built-ins are \(names)")
    }
    try self.init(parsing: found.text)
  }

  /// The built-in model's name when this is one, else nil.
  public var builtInName: String? {
    Self.builtIn.first { (try? ModelDefinition(parsing: $0.text)) == self }?.name
  }

  /// Reads a model from its text. Without an `input` clause the text needs `input`
  /// given. A mistake throws a one-line error naming the character position (from 1)
  /// and what was expected there. Cost: O(text).
  public init(parsing text: String, input given: ImageShape? = nil) throws {
    var parser = ModelTextParser(text)
    let (input, layers) = try parser.model()
    guard let shape = input ?? given else {
      throw PTrainError("model text: no input shape; begin with \"input HxWxC\" (for example input 28x28x1)")
    }
    try self.init(input: shape, layers: layers)
  }
}
