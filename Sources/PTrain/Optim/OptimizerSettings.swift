/// Which optimizer a run uses, and its hyper-parameters other than the learning rate (which
/// `TrainingOptions.learningRate` and `LearningRateSchedule` give).
///
/// - `adam`: ptrain's default, Keras's rule (see the README), bit for bit what earlier
///   versions did; `weightDecay` adds `λθ` to the gradient, as `torch.optim.Adam` does.
/// - `adamw`: `torch.optim.AdamW`, decoupled decay, λ 0.01 unless given (PyTorch's default).
/// - `sgd`: `torch.optim.SGD` with `momentum`, `nesterov` and L2 `weightDecay`.
///
/// Weight decay reaches every trainable parameter, as PyTorch's does unless told
/// otherwise; with `decaysNormsAndBiases` false it skips the one-dimensional tensors
/// (biases and BatchNorm's γ and β), the usual exception.
public struct OptimizerSettings: Sendable, Equatable, CustomStringConvertible {
  public enum Algorithm: String, Sendable, CaseIterable {
    case adam, adamw, sgd

    /// PyTorch's default λ: 0.01 for AdamW, 0 for the others.
    public var defaultWeightDecay: Float { self == .adamw ? 0.01 : 0 }
  }

  public var algorithm: Algorithm
  /// SGD's momentum μ (0: none).
  public var momentum: Float
  /// Nesterov momentum (SGD, needs `momentum` > 0).
  public var nesterov: Bool
  /// λ: L2 for `sgd` and `adam`, decoupled for `adamw`.
  public var weightDecay: Float
  /// Whether biases and BatchNorm's γ and β decay too.
  public var decaysNormsAndBiases: Bool

  public init(
    _ algorithm: Algorithm = .adam, momentum: Float = 0, nesterov: Bool = false, weightDecay: Float? = nil,
    decaysNormsAndBiases: Bool = true
  ) {
    self.algorithm = algorithm
    self.momentum = momentum
    self.nesterov = nesterov
    self.weightDecay = weightDecay ?? algorithm.defaultWeightDecay
    self.decaysNormsAndBiases = decaysNormsAndBiases
  }

  /// Adam with Keras's rule and no weight decay: the default.
  public static let adam = OptimizerSettings()

  /// Throws a one-line error for the first setting that cannot work.
  public func validate() throws {
    guard momentum.isFinite, (0..<1).contains(momentum) else {
      throw PTrainError(option: "momentum", "must be at least 0 and below 1, got \(momentum)")
    }
    guard momentum == 0 || algorithm == .sgd else {
      throw PTrainError(option: "momentum", "is SGD's; \(algorithm.rawValue) keeps its own moments")
    }
    guard !nesterov || (algorithm == .sgd && momentum > 0) else {
      throw PTrainError(option: "nesterov", "needs --optimizer sgd with a --momentum above 0")
    }
    guard weightDecay.isFinite, weightDecay >= 0 else {
      throw PTrainError(option: "weightDecay", "must be a finite number ≥ 0, got \(weightDecay)")
    }
  }

  /// The settings as words, which `init(parsing:)` reads back: `sgd momentum=0.9 nesterov
  /// weight_decay=0.0005 no_decay_bn_bias`. Checkpoints store it as `optimizer_settings`.
  public var description: String {
    var words = [algorithm.rawValue]
    if momentum != 0 { words.append("momentum=\(momentum)") }
    if nesterov { words.append("nesterov") }
    if weightDecay != algorithm.defaultWeightDecay { words.append("weight_decay=\(weightDecay)") }
    if !decaysNormsAndBiases { words.append("no_decay_bn_bias") }
    return words.joined(separator: " ")
  }

  /// Reads `description`'s words; throws a one-line error for anything else.
  public init(parsing text: String) throws {
    let words = text.split(separator: " ").map(String.init)
    guard let first = words.first, let algorithm = Algorithm(rawValue: first) else {
      throw PTrainError(
        "unknown optimizer '\(text)'; use \(Algorithm.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    self.init(algorithm)
    for word in words.dropFirst() {
      let parts = word.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
      switch (parts[0], parts.count == 2 ? Float(parts[1]) : nil) {
      case ("momentum", let value?): momentum = value
      case ("weight_decay", let value?): weightDecay = value
      case ("nesterov", nil) where parts.count == 1: nesterov = true
      case ("no_decay_bn_bias", nil) where parts.count == 1: decaysNormsAndBiases = false
      default: throw PTrainError("optimizer '\(text)': cannot read '\(word)'")
      }
    }
    try validate()
  }

  /// The optimizer's state buffers: Adam's and AdamW's two moments, SGD's momentum buffer
  /// when it has momentum.
  package var stateBufferCount: Int {
    switch algorithm {
    case .adam, .adamw: 2
    case .sgd: momentum > 0 ? 1 : 0
    }
  }

  /// A fresh optimizer of these settings for `parameterCount` parameters.
  package func makeOptimizer(parameterCount: Int) -> any Optimizer {
    switch algorithm {
    case .adam: Adam(parameterCount: parameterCount)
    case .adamw: AdamW(parameterCount: parameterCount)
    case .sgd: SGD(parameterCount: parameterCount, momentum: momentum, nesterov: nesterov)
    }
  }

  /// `range` of the parameters cut where the weight decay of `tensors` (the plan's, which
  /// cover the parameters in order) changes, with each piece's decay. Cost: O(tensors).
  package func weightDecays(in range: Range<Int>, tensors: [ModelPlan.Tensor]) -> [(
    range: Range<Int>, weightDecay: Float
  )] {
    var pieces: [(range: Range<Int>, weightDecay: Float)] = []
    for tensor in tensors where tensor.range.overlaps(range) {
      let piece = range.clamped(to: tensor.range)
      let decay = weightDecay(of: tensor)
      if let last = pieces.last, last.weightDecay == decay, last.range.upperBound == piece.lowerBound {
        pieces[pieces.count - 1].range = last.range.lowerBound..<piece.upperBound
      } else {
        pieces.append((piece, decay))
      }
    }
    return pieces
  }

  /// The weight decay of `tensor`: `weightDecay`, or 0 for a one-dimensional tensor
  /// (a bias, BatchNorm's γ or β) when those do not decay.
  package func weightDecay(of tensor: ModelPlan.Tensor) -> Float {
    decaysNormsAndBiases || tensor.shape.count > 1 ? weightDecay : 0
  }
}
