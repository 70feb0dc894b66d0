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
    ("resnet-20", resNetText(blocksPerStage: 3)),
  ]

  /// The built-in models that take the data's input shape when it fits their layers
  /// (their text gives the shape they were designed for).
  public static let inputAgnostic: Set<String> = ["resnet-20"]

  /// He et al. 2016's CIFAR ResNet with `6n + 2` weighted layers (n = `blocksPerStage`):
  /// a 3×3 convolution of 16 filters, then three stages of n basic blocks with 16, 32 and
  /// 64 filters (two 3×3 convolutions with BatchNorm, the second stage's and third's first
  /// block halving the map with stride 2 and a 1×1 convolution + BatchNorm shortcut),
  /// global average pooling and a dense layer of 10 classes.
  static func resNetText(blocksPerStage: Int) -> String {
    var layers = ["input 32x32x3", "conv 16 3x3 same nobias", "batchnorm", "relu"]
    for (stage, filters) in [16, 32, 64].enumerated() {
      for block in 0..<blocksPerStage {
        let stride = stage > 0 && block == 0 ? " stride 2" : ""
        let body =
          "conv \(filters) 3x3\(stride) same nobias, batchnorm, relu, conv \(filters) 3x3 same nobias, batchnorm"
        let shortcut = stride.isEmpty ? "" : "; conv \(filters) 1x1\(stride) nobias, batchnorm"
        layers += ["residual(\(body)\(shortcut))", "relu"]
      }
    }
    return (layers + ["globalavgpool", "flatten", "dense 10"]).joined(separator: ", ")
  }

  /// The seed model, ptrain's default: Conv32-Pool-Conv64-Pool-Dense on 28×28×1.
  public static let mnistCNN = try! ModelDefinition(named: "mnist-cnn")

  /// The built-in model called `name`; on images of shape `input` when given and the
  /// model is one of `inputAgnostic` (the shape its text gives otherwise). Throws a
  /// one-line error for an unknown name or a shape the model does not fit.
  public init(named name: String, input: ImageShape? = nil) throws {
    guard let found = Self.builtIn.first(where: { $0.name == name }) else {
      let names = Self.builtIn.map(\.name).joined(separator: ", ")
      throw PTrainError("there is no built-in model \"\(name)\"; the built-ins are \(names)")
    }
    let model = try ModelDefinition(parsing: found.text)
    guard let input, Self.inputAgnostic.contains(name), input != model.input else {
      self = model
      return
    }
    do { try self.init(input: input, layers: model.layers) } catch let error as PTrainError {
      throw PTrainError("the built-in \(name) does not fit \(input) images: \(error)")
    }
  }

  /// The built-in model's name when this is one (on any input for `inputAgnostic`
  /// ones), else nil.
  public var builtInName: String? {
    Self.builtIn.first {
      guard let model = try? ModelDefinition(parsing: $0.text), model.layers == layers else { return false }
      return model.input == input || Self.inputAgnostic.contains($0.name)
    }?.name
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
