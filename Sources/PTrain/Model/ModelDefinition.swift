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

/// Zero padding of a convolution: none (`valid`), or enough that a stride-1 output has
/// the input's size (`same`, `(kernel − 1) / 2` on each side, as Keras and PyTorch's
/// `padding="same"` do for odd kernels).
public enum Padding: String, Sendable, Hashable {
  case valid, same
}

/// One layer of a sequential model, as a person defines it. Shapes are not given: the
/// model infers every layer's input from the one before (see `ModelDefinition`).
public enum Layer: Sendable, Hashable {
  /// A 2-D convolution with `filters` output channels and a square, odd `kernel`.
  case conv(filters: Int, kernel: Int, stride: Int = 1, padding: Padding = .valid, bias: Bool = true)
  /// Batch normalisation over the channels (BatchNorm2d on a map, BatchNorm1d after dense).
  case batchNorm
  case relu
  /// Max-pooling over `size` × `size` windows moved by `stride` (default: `size`).
  case maxPool(size: Int, stride: Int? = nil)
  /// Average pooling over `size` × `size` windows moved by `stride` (default: `size`).
  case avgPool(size: Int, stride: Int? = nil)
  /// The mean of each channel over the whole map: H × W × C becomes 1 × 1 × C.
  case globalAvgPool
  /// A map's values as one vector, for a dense layer.
  case flatten
  /// A fully connected layer with `units` outputs.
  case dense(units: Int, bias: Bool = true)
  /// Inverted dropout: in training each value is zeroed with probability `rate` and the
  /// rest scaled by 1 / (1 − rate); in evaluation it passes values through.
  case dropout(rate: Float)

  /// A convolution, Keras-style: `.conv(32, kernel: 3, padding: .same)`.
  public static func conv(
    _ filters: Int, kernel: Int, stride: Int = 1, padding: Padding = .valid, bias: Bool = true
  ) -> Layer {
    .conv(filters: filters, kernel: kernel, stride: stride, padding: padding, bias: bias)
  }

  /// A dense layer: `.dense(10)`.
  public static func dense(_ units: Int, bias: Bool = true) -> Layer { .dense(units: units, bias: bias) }

  /// Max-pooling: `.maxPool(2)`.
  public static func maxPool(_ size: Int, stride: Int? = nil) -> Layer { .maxPool(size: size, stride: stride) }

  /// Average pooling: `.avgPool(2)`.
  public static func avgPool(_ size: Int, stride: Int? = nil) -> Layer { .avgPool(size: size, stride: stride) }

  /// Dropout: `.dropout(0.25)`.
  public static func dropout(_ rate: Float) -> Layer { .dropout(rate: rate) }

  /// The layer in the model text's words, in its shortest form (defaults left out).
  public var text: String {
    switch self {
    case .conv(let filters, let kernel, let stride, let padding, let bias):
      return "conv \(filters) \(kernel)x\(kernel)" + (stride != 1 ? " stride \(stride)" : "")
        + (padding == .same ? " same" : "") + (bias ? "" : " nobias")
    case .batchNorm: return "batchnorm"
    case .relu: return "relu"
    case .maxPool(let size, let stride):
      return "maxpool \(size)" + (stride.map { $0 != size ? " stride \($0)" : "" } ?? "")
    case .avgPool(let size, let stride):
      return "avgpool \(size)" + (stride.map { $0 != size ? " stride \($0)" : "" } ?? "")
    case .globalAvgPool: return "globalavgpool"
    case .flatten: return "flatten"
    case .dense(let units, let bias): return "dense \(units)" + (bias ? "" : " nobias")
    case .dropout(let rate): return "dropout \(rate)"
    }
  }

  /// The same layer with defaults spelled out, so that equal layers compare equal
  /// (`maxPool(2)` and `maxPool(2, stride: 2)`).
  var canonical: Layer {
    switch self {
    case .maxPool(let size, let stride): .maxPool(size: size, stride: stride ?? size)
    case .avgPool(let size, let stride): .avgPool(size: size, stride: stride ?? size)
    default: self
    }
  }
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
    self.layers = layers.map(\.canonical)
    _ = try ModelPlan(self)
  }

  /// The model text: `input 28x28x1, conv 32 3x3, relu, …, dense 10`.
  public var text: String { (["input \(input)"] + layers.map(\.text)).joined(separator: ", ") }
  public var description: String { text }

  /// The classes: the last dense layer's outputs.
  public var classes: Int {
    guard case .dense(let units, _) = layers.last else { return 0 }
    return units
  }

  /// The same model with its last dense layer replaced by one of `classes` outputs: a
  /// new head for fine-tuning.
  public func withHead(classes: Int) throws -> ModelDefinition {
    guard case .dense(_, let bias) = layers.last else { throw PTrainError("the model does not end in a dense layer") }
    return try ModelDefinition(input: input, layers: layers.dropLast() + [.dense(units: classes, bias: bias)])
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

/// Reads the model text, token by token, remembering where each token began for errors.
struct ModelTextParser {
  private let scalars: [Unicode.Scalar]
  private var position = 0

  init(_ text: String) { scalars = Array(text.unicodeScalars) }

  private func failure(_ expected: String, at start: Int) -> PTrainError {
    let found = start < scalars.count ? "\"\(token(at: start).text)\"" : "the end"
    return PTrainError("model text, position \(start + 1): expected \(expected), found \(found)")
  }

  private func isSeparator(_ scalar: Unicode.Scalar) -> Bool { scalar == " " || scalar == "\t" || scalar == "\n" }

  /// The token starting at `start` (after whitespace): a word or one comma.
  private func token(at start: Int) -> (text: String, start: Int, end: Int) {
    var begin = start
    while begin < scalars.count, isSeparator(scalars[begin]) { begin += 1 }
    guard begin < scalars.count else { return ("", begin, begin) }
    if scalars[begin] == "," { return (",", begin, begin + 1) }
    var end = begin
    while end < scalars.count, !isSeparator(scalars[end]), scalars[end] != "," { end += 1 }
    var text = String.UnicodeScalarView()
    text.append(contentsOf: scalars[begin..<end])
    return (String(text).lowercased(), begin, end)
  }

  /// The next token without consuming it.
  private func peek() -> (text: String, start: Int, end: Int) { token(at: position) }

  private mutating func next() -> (text: String, start: Int) {
    let found = peek()
    position = found.end
    return (found.text, found.start)
  }

  private mutating func integer(_ what: String, in range: ClosedRange<Int>) throws -> Int {
    let (text, start) = next()
    guard let value = Int(text), range.contains(value) else {
      throw failure("\(what) (an integer from \(range.lowerBound) to \(range.upperBound))", at: start)
    }
    return value
  }

  /// `NxN`, square.
  private mutating func square(_ what: String, in range: ClosedRange<Int>) throws -> Int {
    let (text, start) = next()
    let parts = text.split(separator: "x", omittingEmptySubsequences: false)
    guard parts.count == 2, let a = Int(parts[0]), let b = Int(parts[1]), a == b, range.contains(a) else {
      throw failure("\(what) as KxK (square, K from \(range.lowerBound) to \(range.upperBound))", at: start)
    }
    return a
  }

  /// The whole text: an optional input shape, then layers separated by commas.
  mutating func model() throws -> (ImageShape?, [Layer]) {
    var input: ImageShape?
    if peek().text == "input" {
      _ = next()
      let (text, start) = next()
      let parts = text.split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
      guard parts.count == 3, parts.allSatisfy({ ($0 ?? 0) >= 1 && ($0 ?? 0) <= 4096 }),
        let height = parts[0], let width = parts[1], let channels = parts[2], channels <= 64
      else { throw failure("the input shape as HxWxC (for example 28x28x1)", at: start) }
      input = ImageShape(height: height, width: width, channels: channels)
      let (comma, at) = next()
      guard comma == "," else { throw failure("a comma after the input shape", at: at) }
    }
    var layers: [Layer] = []
    while true {
      layers.append(try layer())
      let (text, start) = next()
      if text.isEmpty { break }
      guard text == "," else { throw failure("a comma or the end", at: start) }
    }
    return (input, layers)
  }

  private mutating func layer() throws -> Layer {
    let (word, start) = next()
    switch word {
    case "conv":
      let filters = try integer("the number of filters", in: 1...4096)
      let kernelStart = peek().start
      let kernel = try square("the kernel size", in: 1...7)
      guard kernel % 2 == 1 else { throw failure("an odd kernel size (1x1, 3x3, 5x5 or 7x7)", at: kernelStart) }
      var stride = 1
      var padding = Padding.valid
      var bias = true
      while true {
        switch peek().text {
        case "stride":
          _ = next()
          stride = try integer("the stride", in: 1...2)
        case "same": (_, padding) = (next(), .same)
        case "valid": (_, padding) = (next(), .valid)
        case "nobias": (_, bias) = (next(), false)
        default: return .conv(filters: filters, kernel: kernel, stride: stride, padding: padding, bias: bias)
        }
      }
    case "batchnorm": return .batchNorm
    case "relu": return .relu
    case "flatten": return .flatten
    case "globalavgpool": return .globalAvgPool
    case "maxpool", "avgpool":
      let size = try integer("the pool size", in: 2...3)
      var stride = size
      if peek().text == "stride" {
        _ = next()
        stride = try integer("the stride", in: 1...3)
      }
      return word == "maxpool" ? .maxPool(size: size, stride: stride) : .avgPool(size: size, stride: stride)
    case "dense":
      let units = try integer("the number of units", in: 1...65536)
      if peek().text == "nobias" {
        _ = next()
        return .dense(units: units, bias: false)
      }
      return .dense(units: units)
    case "dropout":
      let (text, at) = next()
      guard let rate = Float(text), rate >= 0, rate < 1 else {
        throw failure("the dropout rate (a number from 0 up to, not including, 1)", at: at)
      }
      return .dropout(rate: rate)
    default:
      throw failure(
        "a layer (conv, batchnorm, relu, maxpool, avgpool, globalavgpool, flatten, dense or dropout)", at: start)
    }
  }
}
