/// The first and second moments that `Adam` and `AdamW` keep per parameter, `exp_avg` and
/// `exp_avg_sq` as PyTorch calls them: their buffers, the checks a checkpoint's values
/// pass, and their restore.
package struct AdamMoments {
  package let first: AlignedFloats
  package let second: AlignedFloats

  package static let names = ["exp_avg", "exp_avg_sq"]

  package init(parameterCount: Int) {
    first = AlignedFloats(count: parameterCount)
    second = AlignedFloats(count: parameterCount)
  }

  /// Any finite first moment; a second moment is never negative.
  package static func isValid(_ value: Float, inState name: String) -> Bool {
    value.isFinite && (name != "exp_avg_sq" || value >= 0)
  }

  package var buffers: [AlignedFloats] { [first, second] }

  /// Copies the saved moments (in `names`' order) in. Cost: O(parameters).
  package func restore(_ state: [[Float]]) {
    first.copy(from: state[0])
    second.copy(from: state[1])
  }
}
