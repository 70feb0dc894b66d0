/// Inverted dropout: `dropout RATE`. In training each value is zeroed with probability
/// `rate` and the rest scaled by 1 / (1 − rate); in evaluation it passes values through.
/// Its masks are drawn from (seed, step, position in the batch, layer), so they are the
/// same at any thread count.
package struct DropoutLayer: LayerKind {
  package let rate: Float

  package static let word = "dropout"

  package static func parse(_ text: inout ModelTextParser) throws -> DropoutLayer {
    let (word, at) = text.next()
    guard let rate = Float(word), rate >= 0, rate < 1 else {
      throw text.failure("the dropout rate (a number from 0 up to, not including, 1)", at: at)
    }
    return DropoutLayer(rate: rate)
  }

  package var text: String { "dropout \(rate)" }
  package func plan(_ layer: inout LayerPlanning) throws {}
  package func torchModule(_ layer: ModelPlan.PlannedLayer) -> String { "Dropout(\(rate))" }
  package func operation(_ layer: ModelPlan.PlannedLayer) -> LayerOperation { .dropout }
}

extension Layer {
  /// Inverted dropout with probability `rate`.
  public static func dropout(rate: Float) -> Layer { Layer(DropoutLayer(rate: rate)) }
  /// Dropout: `.dropout(0.25)`.
  public static func dropout(_ rate: Float) -> Layer { .dropout(rate: rate) }
}
