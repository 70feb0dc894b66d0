/// The classic MNIST CNN and the layout of its parameters.
///
/// Conv2D(32, 3×3, ReLU) → MaxPool 2 → Conv2D(64, 3×3, ReLU) → MaxPool 2 → Flatten →
/// Dense(classes), on 28×28×1 images, NHWC throughout.
///
/// All parameters live in one flat Float buffer, tensor after tensor in this order:
///
/// | name | shape | layout |
/// |---|---|---|
/// | `conv1.weight` | 3×3×1×32 | HWIO |
/// | `conv1.bias` | 32 | |
/// | `conv2.weight` | 3×3×32×64 | HWIO |
/// | `conv2.bias` | 64 | |
/// | `dense.weight` | classes×1600 | [out][in], `in` in H,W,C order of the 5×5×64 map |
/// | `dense.bias` | classes | |
///
/// `parameters_sha256` is the SHA-256 of these Floats' little-endian bytes in this order.
public struct ModelSpec: Sendable, Equatable {
  /// One named tensor of the flat parameter buffer.
  public struct Tensor: Sendable, Equatable {
    public let name: String
    public let shape: [Int]
    public let offset: Int
    public var count: Int { shape.reduce(1, *) }
    /// The layer the tensor belongs to.
    public var layer: Layer { Layer(rawValue: String(name.prefix { $0 != "." }))! }
  }

  public static let imageHeight = 28
  public static let imageWidth = 28
  public static let imagePixels = imageHeight * imageWidth

  /// Output classes of the dense head.
  public let classes: Int
  public let conv1 = Conv3x3Shape(height: 28, width: 28, inChannels: 1, outChannels: 32)
  public let conv2 = Conv3x3Shape(height: 13, width: 13, inChannels: 32, outChannels: 64)
  /// Length of the flattened 5×5×64 feature map fed to the dense head.
  public let features = 5 * 5 * 64
  /// The tensors in buffer order.
  public let tensors: [Tensor]

  public init(classes: Int = 10) {
    self.classes = classes
    var offset = 0
    var tensors: [Tensor] = []
    for (name, shape) in [
      ("conv1.weight", [3, 3, 1, 32]), ("conv1.bias", [32]),
      ("conv2.weight", [3, 3, 32, 64]), ("conv2.bias", [64]),
      ("dense.weight", [classes, 1600]), ("dense.bias", [classes]),
    ] {
      tensors.append(Tensor(name: name, shape: shape, offset: offset))
      offset += shape.reduce(1, *)
    }
    self.tensors = tensors
  }

  /// The total number of parameters (34,826 for 10 classes).
  public var parameterCount: Int { tensors.last!.offset + tensors.last!.count }

  /// The tensor called `name`, if the model has one.
  public func tensor(_ name: String) -> Tensor? { tensors.first { $0.name == name } }

  /// Offsets of each tensor, for the kernels.
  @usableFromInline var conv1Weight: Int { tensors[0].offset }
  @usableFromInline var conv1Bias: Int { tensors[1].offset }
  @usableFromInline var conv2Weight: Int { tensors[2].offset }
  @usableFromInline var conv2Bias: Int { tensors[3].offset }
  @usableFromInline var denseWeight: Int { tensors[4].offset }
  @usableFromInline var denseBias: Int { tensors[5].offset }

  /// FLOP of one training image as direct convolution would do it: forward, both conv2
  /// gradients, conv1's weight gradient and the dense layer (≈ 14.26 M). The common
  /// measure for comparing engines.
  public var trainingFlopsPerImage: Int {
    conv1.flops * 2 + conv2.flops * 3 + 6 * features * classes
  }

  /// FLOP the kernels execute for one training image (≈ 8.8 M): conv2's three passes as
  /// Winograd F(2×2, 3×3) GEMMs, 16 points per 2×2 tile, conv1 directly, the dense layer.
  /// The transforms' adds are not counted.
  public var executedTrainingFlopsPerImage: Int {
    let forwardTiles = WinogradTiling.forward(conv2).tiles
    let inputGradientTiles = WinogradTiling.inputGradient(conv2).tiles
    let pointMACs = winogradPoints * conv2.inChannels * conv2.outChannels
    return conv1.flops * 2 + 2 * pointMACs * (2 * forwardTiles + inputGradientTiles) + 6 * features * classes
  }

  /// Keras-style initial parameters: Glorot-uniform kernels, zero biases, drawn from
  /// `generator` tensor by tensor in buffer order. Cost: O(parameterCount).
  public func initialParameters(using generator: inout SeededGenerator) -> [Float] {
    var values = [Float](repeating: 0, count: parameterCount)
    let kernels: [(Tensor, fanIn: Int, fanOut: Int)] = [
      (tensors[0], 9 * conv1.inChannels, 9 * conv1.outChannels),
      (tensors[2], 9 * conv2.inChannels, 9 * conv2.outChannels),
      (tensors[4], features, classes),
    ]
    for (tensor, fanIn, fanOut) in kernels {
      let limit = (6 / Float(fanIn + fanOut)).squareRoot()
      for i in tensor.offset..<(tensor.offset + tensor.count) {
        values[i] = (generator.nextUnitFloat() * 2 - 1) * limit
      }
    }
    return values
  }
}
