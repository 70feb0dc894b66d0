/// Adam with Keras's defaults and update rule:
/// `m += (g - m)(1 - β1)`, `v += (g² - v)(1 - β2)`,
/// `θ -= α · m / (√v + ε)` with `α = lr · √(1 - β2^t) / (1 - β1^t)`.
/// Its state is the first and second moments, `exp_avg` and `exp_avg_sq` as PyTorch calls them.
package final class Adam: Optimizer {
  package let learningRate: Float
  package let beta1: Float = 0.9
  package let beta2: Float = 0.999
  package let epsilon: Float = 1e-7
  /// Steps taken so far (`t` of the last update).
  package private(set) var step = 0
  /// First and second moments, one per parameter.
  package let firstMoment: AlignedFloats
  package let secondMoment: AlignedFloats

  package static let stateNames = ["exp_avg", "exp_avg_sq"]

  package static func isValid(_ value: Float, inState name: String) -> Bool {
    value.isFinite && (name != "exp_avg_sq" || value >= 0)
  }

  package init(parameterCount: Int, learningRate: Float = 1e-3) {
    self.learningRate = learningRate
    firstMoment = AlignedFloats(count: parameterCount)
    secondMoment = AlignedFloats(count: parameterCount)
  }

  /// The rule and its constants, as checkpoints' metadata says them.
  package static let rule = "adam (keras rule, beta1 0.9, beta2 0.999, eps 1e-7)"
  package var description: String { Self.rule }
  package var state: [AlignedFloats] { [firstMoment, secondMoment] }

  /// The step size `α` of the next step, `t = step + 1`.
  package func stepSizeForNext() -> Float {
    let t = Double(step + 1)
    let correction = (1 - pow(Double(beta2), t)).squareRoot() / (1 - pow(Double(beta1), t))
    return Float(Double(learningRate) * correction)
  }

  package func restore(step: Int, state: [[Float]]) {
    self.step = step
    firstMoment.copy(from: state[0])
    secondMoment.copy(from: state[1])
  }

  package func finishStep() { step += 1 }

  /// One parameter at a time, in a loop that the compiler vectorizes (with vector square
  /// roots and divisions, which round as the scalar ones do). About ten FLOP per parameter.
  package func update(
    _ range: Range<Int>, parameters: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>,
    gradientScale: Float
  ) {
    let alpha = stepSizeForNext()
    let m = firstMoment.base
    let v = secondMoment.base
    let keep1 = 1 - beta1
    let keep2 = 1 - beta2
    let epsilon = self.epsilon
    for i in range {
      let g = gradient[i] * gradientScale
      let first = m[i] + (g - m[i]) * keep1
      let second = v[i] + (g * g - v[i]) * keep2
      m[i] = first
      v[i] = second
      parameters[i] -= alpha * first / (second.squareRoot() + epsilon)
    }
  }
}

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif
