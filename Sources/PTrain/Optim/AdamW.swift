/// AdamW as `torch.optim.AdamW` computes it (its single-tensor path, which PyTorch takes on
/// the CPU), with its defaults β1 0.9, β2 0.999, ε 1e-8:
/// `θ ← θ(1 − lr·λ)` (decoupled weight decay), `m ← m + (g − m)(1 − β1)`,
/// `v ← vβ2 + (1 − β2)g²`, `θ ← θ − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)`.
/// Its state is `exp_avg` and `exp_avg_sq`, as in `Adam`.
package final class AdamW: Optimizer {
  /// β1, β2 as PyTorch's Python floats: in Double for the bias corrections and `1 − β`, in
  /// Float where a tensor operation takes them.
  package static let beta1 = 0.9, beta2 = 0.999
  package let epsilon: Float = 1e-8
  package private(set) var step = 0
  package let moments: AdamMoments

  package let stateNames = AdamMoments.names

  package func isValid(_ value: Float, inState name: String) -> Bool { AdamMoments.isValid(value, inState: name) }

  package init(parameterCount: Int) { moments = AdamMoments(parameterCount: parameterCount) }

  package var description: String { "adamw (torch rule, beta1 0.9, beta2 0.999, eps 1e-8)" }
  package var state: [AlignedFloats] { moments.buffers }

  package func restore(step: Int, state: [[Float]]) {
    self.step = step
    moments.restore(state)
  }

  package func finishStep() { step += 1 }

  /// One parameter at a time in a vectorized loop, in PyTorch's order of operations (its
  /// kernels fuse some multiply-adds that this rounds twice, so results agree to float
  /// rounding). About twelve FLOP per parameter.
  package func update(
    _ range: Range<Int>, parameters: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>,
    gradientScale: Float, learningRate: Float, weightDecay: Float
  ) {
    let t = step + 1
    let rate = Double(learningRate)
    let shrink = Float(1 - rate * Double(weightDecay))
    let stepSize = Float(rate / adamBiasCorrection(beta: Self.beta1, step: t))
    let correction2 = Float(adamBiasCorrection(beta: Self.beta2, step: t).squareRoot())
    let m = moments.first.base
    let v = moments.second.base
    let (beta2, keep1, keep2) = (Float(Self.beta2), Float(1 - Self.beta1), Float(1 - Self.beta2))
    let epsilon = self.epsilon
    for i in range {
      let g = gradient[i] * gradientScale
      let decayed = parameters[i] * shrink
      let first = m[i] + (g - m[i]) * keep1
      let second = v[i] * beta2 + keep2 * g * g
      m[i] = first
      v[i] = second
      let denominator = second.squareRoot() / correction2 + epsilon
      parameters[i] = decayed - stepSize * (first / denominator)
    }
  }
}
