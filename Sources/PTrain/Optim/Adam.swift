/// Adam with Keras's defaults and update rule (ptrain's default optimizer):
/// `g += λθ` (L2 weight decay, as `torch.optim.Adam(weight_decay=λ)` adds it, when λ > 0),
/// `m += (g − m)(1 − β1)`, `v += (g² − v)(1 − β2)`,
/// `θ −= α · m / (√v + ε)` with `α = lr · √(1 − β2^t) / (1 − β1^t)`.
/// Keras's ε (1e-7) is added to `√v` before the bias correction, PyTorch's after it, so
/// the two differ where `√v` is near ε; `AdamW` follows PyTorch.
/// Its state is the first and second moments, `exp_avg` and `exp_avg_sq` as PyTorch calls them.
package final class Adam: Optimizer {
  package let beta1: Float = 0.9
  package let beta2: Float = 0.999
  package let epsilon: Float = 1e-7
  /// Steps taken so far (`t` of the last update).
  package private(set) var step = 0
  /// First and second moments, one per parameter.
  package let moments: AdamMoments

  package let stateNames = AdamMoments.names

  package func isValid(_ value: Float, inState name: String) -> Bool { AdamMoments.isValid(value, inState: name) }

  package init(parameterCount: Int) { moments = AdamMoments(parameterCount: parameterCount) }

  /// The rule and its constants, as checkpoints' metadata says them.
  package static let rule = "adam (keras rule, beta1 0.9, beta2 0.999, eps 1e-7)"
  package var description: String { Self.rule }
  package var state: [AlignedFloats] { moments.buffers }

  /// The step size `α` of the next step, `t = step + 1`, at `learningRate`.
  package func stepSizeForNext(learningRate: Float) -> Float {
    let t = step + 1
    let correction =
      adamBiasCorrection(beta: Double(beta2), step: t).squareRoot() / adamBiasCorrection(beta: Double(beta1), step: t)
    return Float(Double(learningRate) * correction)
  }

  package func restore(step: Int, state: [[Float]]) {
    self.step = step
    moments.restore(state)
  }

  package func finishStep() { step += 1 }

  /// One parameter at a time, in a loop that the compiler vectorizes (with vector square
  /// roots and divisions, which round as the scalar ones do). About ten FLOP per parameter.
  package func update(
    _ range: Range<Int>, parameters: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>,
    gradientScale: Float, learningRate: Float, weightDecay: Float
  ) {
    let alpha = stepSizeForNext(learningRate: learningRate)
    let m = moments.first.base
    let v = moments.second.base
    let keep1 = 1 - beta1
    let keep2 = 1 - beta2
    let epsilon = self.epsilon
    // Without decay `+ 0 · θ` can only turn a −0 gradient into +0, which gives the same moments.
    for i in range {
      let g = gradient[i] * gradientScale + weightDecay * parameters[i]
      let first = m[i] + (g - m[i]) * keep1
      let second = v[i] + (g * g - v[i]) * keep2
      m[i] = first
      v[i] = second
      parameters[i] -= alpha * first / (second.squareRoot() + epsilon)
    }
  }
}
