/// A residual block, `residual(LAYERS)` or `residual(LAYERS; SHORTCUT)`: the sum of the
/// body's output and the shortcut's (the block's input itself when the shortcut is empty),
/// as He et al. 2016's building block. A ReLU after the block is an ordinary layer, which
/// the addition applies as it stores its sum (`Fusions.reluOnStore`).
///
/// `ModelPlan` flattens the block into its body's layers, then its shortcut's, then one
/// layer of this kind that adds the two (`LayerOperation.add`); each layer reads the one
/// before it but the first of the body and of the shortcut, which read the block's input.
/// In PyTorch the block is one module at its index K of the `nn.Sequential`, with two
/// `nn.Sequential` children, `body` and `shortcut`, and `forward(x) = body(x) +
/// shortcut(x)`; its tensors are named `K.body.I.weight`, `K.shortcut.I.weight`.
package struct ResidualLayer: LayerKind {
  /// The layers whose output is added: at least one.
  package let body: [Layer]
  /// The layers the block's input passes through before the addition: none for the
  /// identity.
  package let shortcut: [Layer]

  package static let word = "residual"

  package static func parse(_ text: inout ModelTextParser) throws -> ResidualLayer {
    let (open, at) = text.next()
    guard open == "(" else {
      throw text.failure("\"(\" and the block's layers, as residual(conv 16 3x3 same, …)", at: at)
    }
    let (body, end, _) = try text.layerList(endingWith: [";", ")"])
    let shortcut = end == ";" ? try text.layerList(endingWith: [")"]).0 : []
    for layer in body + shortcut where layer.kind is ResidualLayer {
      throw text.failure("a layer other than a residual block inside a residual block", at: at)
    }
    return ResidualLayer(body: body, shortcut: shortcut)
  }

  package var text: String {
    let body = self.body.map(\.text).joined(separator: ", ")
    return shortcut.isEmpty ? "residual(\(body))" : "residual(\(body); \(shortcut.map(\.text).joined(separator: ", ")))"
  }

  /// Plans the addition: the body's output (`input`) and the shortcut's
  /// (`shortcutInput`) must be maps of the same shape.
  package func plan(_ layer: inout LayerPlanning) throws {
    guard let other = layer.shortcutInput else { throw layer.failure("has no shortcut to add") }
    guard layer.input == other.shape, !layer.inputIsFlat, !other.isFlat else {
      let body = layer.inputIsFlat ? "a vector of \(layer.input.count)" : "\(layer.input)"
      let shortcut = other.isFlat ? "a vector of \(other.shape.count)" : "\(other.shape)"
      throw layer.failure(
        "adds the body's output, \(body), to the shortcut's, \(shortcut); they must be maps of the same shape")
    }
  }

  package func torchModule(_ layer: ModelPlan.PlannedLayer) -> String { "Residual()" }
  package func operation(_ layer: ModelPlan.PlannedLayer) -> LayerOperation { .add }
  package var storesReLU: Bool { true }
}

extension Layer {
  /// A residual block: `body`'s output plus `shortcut`'s, both applied to the block's
  /// input (the identity when `shortcut` is empty). Blocks do not nest.
  ///
  /// ```swift
  /// .residual([.conv(32, kernel: 3, stride: 2, padding: .same, bias: false), .batchNorm, .relu,
  ///            .conv(32, kernel: 3, padding: .same, bias: false), .batchNorm],
  ///           shortcut: [.conv(32, kernel: 1, stride: 2, bias: false), .batchNorm])
  /// ```
  public static func residual(_ body: [Layer], shortcut: [Layer] = []) -> Layer {
    Layer(ResidualLayer(body: body, shortcut: shortcut))
  }

  /// The layers of a residual block's body and shortcut, or nil for any other layer.
  package var residualBranches: (body: [Layer], shortcut: [Layer])? {
    (kind as? ResidualLayer).map { ($0.body, $0.shortcut) }
  }
}
