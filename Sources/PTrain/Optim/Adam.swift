/// Adam with Keras's defaults and update rule:
/// `m += (g - m)(1 - β1)`, `v += (g² - v)(1 - β2)`,
/// `θ -= α · m / (√v + ε)` with `α = lr · √(1 - β2^t) / (1 - β1^t)`.
///
/// The moments live in flat buffers parallel to the parameters, so any contiguous range
/// can be updated independently; that lets every worker update its own slice.
package final class Adam {
  package let learningRate: Float
  package let beta1: Float = 0.9
  package let beta2: Float = 0.999
  package let epsilon: Float = 1e-7
  /// Steps taken so far (`t` of the last update).
  package private(set) var step = 0
  /// First and second moments, one per parameter.
  package let firstMoment: AlignedFloats
  package let secondMoment: AlignedFloats

  package init(parameterCount: Int, learningRate: Float = 1e-3) {
    self.learningRate = learningRate
    firstMoment = AlignedFloats(count: parameterCount)
    secondMoment = AlignedFloats(count: parameterCount)
  }

  /// The step size `α` of the next step, `t = step + 1`. Every worker calls this
  /// during a step; one of them calls `finishStep()` once all have updated.
  package func stepSizeForNext() -> Float {
    let t = Double(step + 1)
    let correction = (1 - pow(Double(beta2), t)).squareRoot() / (1 - pow(Double(beta1), t))
    return Float(Double(learningRate) * correction)
  }

  /// Restores the step count and both moments from a checkpoint.
  package func restore(step: Int, firstMoment m: [Float], secondMoment v: [Float]) {
    self.step = step
    firstMoment.copy(from: m)
    secondMoment.copy(from: v)
  }

  /// Records that a step's updates are complete.
  package func finishStep() { step += 1 }

  /// Updates `parameters[range]` from `gradient[range] · gradientScale`, one parameter at
  /// a time in a loop that the compiler vectorizes (with vector square roots and
  /// divisions, which round as the scalar ones do), so the bits do not depend on where a
  /// range starts. Cost: O(range.count), about ten FLOP per parameter.
  package func update(
    _ range: Range<Int>, parameters: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>,
    gradientScale: Float, stepSize alpha: Float
  ) {
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
