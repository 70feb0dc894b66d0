/// What one kind of layer knows about itself, in one file per kind: its words in the model
/// text (`parse` and `text`), its shape rule and tensors (`plan`: names, PyTorch layout,
/// the kernel that runs it), its PyTorch module and its initial values. Adding a kind is
/// one file with a conforming type and one line in `Layer.kinds`.
package protocol LayerKind: Sendable, Hashable {
  /// The word that begins the layer in the model text: `conv`.
  static var word: String { get }
  /// Reads the layer's arguments, after its word, from the model text.
  static func parse(_ text: inout ModelTextParser) throws -> Self
  /// The layer in the model text, in its shortest form (defaults left out).
  var text: String { get }
  /// Works out the layer on its input: the output shape, the tensors, the kernel and the
  /// FLOP; throws `planning.failure(…)` when the layer does not fit its input.
  func plan(_ planning: inout LayerPlanning) throws
  /// PyTorch's module for the layer, with its arguments: `Conv2d(1, 32, 3)`.
  func torchModule(_ layer: ModelPlan.PlannedLayer) -> String
  /// Writes the layer's initial parameters into `values` (the flat buffer), drawing any
  /// random ones from `generator`. Cost: O(the layer's parameters).
  func initialize(
    _ layer: ModelPlan.PlannedLayer, parameters values: inout [Float], using generator: inout SeededGenerator)
  /// Writes the layer's initial state (running statistics) into `values`.
  func initialize(_ layer: ModelPlan.PlannedLayer, state values: inout [Float])
  /// Whether the layer can apply a ReLU directly above it as it stores its output
  /// (`Fusions.reluOnStore`).
  var storesReLU: Bool { get }
  /// The operation a replica runs for the planned layer (its kernels).
  func operation(_ layer: ModelPlan.PlannedLayer) -> LayerOperation
}

extension LayerKind {
  package func initialize(
    _ layer: ModelPlan.PlannedLayer, parameters values: inout [Float], using generator: inout SeededGenerator
  ) {}
  package func initialize(_ layer: ModelPlan.PlannedLayer, state values: inout [Float]) {}
  package var storesReLU: Bool { false }

  /// A layer of this kind, read from the model text after its word.
  static func layer(parsing text: inout ModelTextParser) throws -> Layer { Layer(try parse(&text)) }

  /// Whether `other` is the same kind with the same arguments.
  func isEqual(to other: any LayerKind) -> Bool { (other as? Self) == self }
}

/// One layer of a sequential model, as a person defines it: `.conv(32, kernel: 3)`,
/// `.batchNorm`, `.relu`, `.maxPool(2)`, `.flatten`, `.dense(10)` (see each kind's file in
/// `Layers/`). Shapes are not given: the model infers every layer's input from the one
/// before (see `ModelDefinition`).
public struct Layer: Sendable, Hashable, CustomStringConvertible {
  /// The kind and its arguments.
  package let kind: any LayerKind

  package init(_ kind: some LayerKind) { self.kind = kind }

  /// The kinds the model text knows, in the order its error messages list them.
  static let kinds: [any LayerKind.Type] = [
    ConvLayer.self, BatchNormLayer.self, ReLULayer.self, MaxPoolLayer.self, AvgPoolLayer.self,
    GlobalAvgPoolLayer.self, FlattenLayer.self, DenseLayer.self, DropoutLayer.self, ResidualLayer.self,
  ]

  /// The layer in the model text's words, in its shortest form (defaults left out).
  public var text: String { kind.text }
  public var description: String { text }
  /// The kind's word: conv, batchnorm, relu, maxpool, …
  public var word: String { type(of: kind).word }

  public static func == (a: Layer, b: Layer) -> Bool { a.kind.isEqual(to: b.kind) }

  public func hash(into hasher: inout Hasher) {
    hasher.combine(ObjectIdentifier(type(of: kind)))
    hasher.combine(kind)
  }
}

/// Keras's Glorot-uniform initialisation: each value of `range` drawn from `generator`,
/// uniform within ±√(6 / (fan in + fan out)). Cost: O(range).
func glorotUniform(
  _ range: Range<Int>, fanIn: Int, fanOut: Int, into values: inout [Float], using generator: inout SeededGenerator
) {
  let limit = (6 / Float(fanIn + fanOut)).squareRoot()
  for i in range { values[i] = (generator.nextUnitFloat() * 2 - 1) * limit }
}
