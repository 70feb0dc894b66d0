/// Stochastic gradient descent as `torch.optim.SGD` computes it (without dampening):
/// `g ← g + λθ` (L2 weight decay), then with momentum μ > 0 `b ← g` at the first step and
/// `b ← bμ + g` after it, and `g ← g + μb` (Nesterov) or `g ← b`; finally `θ ← θ − lr·g`.
/// Its state is the momentum buffer, `momentum_buffer` as PyTorch calls it; without
/// momentum it keeps none.
package final class SGD: Optimizer {
  package let momentum: Float
  package let nesterov: Bool
  package private(set) var step = 0
  /// The momentum buffer `b`, one value per parameter; empty without momentum.
  package let velocity: AlignedFloats?

  package var stateNames: [String] { velocity == nil ? [] : ["momentum_buffer"] }

  package func isValid(_ value: Float, inState name: String) -> Bool { value.isFinite }

  package init(parameterCount: Int, momentum: Float, nesterov: Bool) {
    self.momentum = momentum
    self.nesterov = nesterov
    velocity = momentum > 0 ? AlignedFloats(count: parameterCount) : nil
  }

  package var description: String {
    "sgd (torch rule, momentum \(momentum)\(nesterov ? ", nesterov" : ""), no dampening)"
  }
  package var state: [AlignedFloats] { velocity.map { [$0] } ?? [] }

  package func restore(step: Int, state: [[Float]]) {
    self.step = step
    if let velocity { velocity.copy(from: state[0]) }
  }

  package func finishStep() { step += 1 }

  /// One parameter at a time in a vectorized loop, in PyTorch's order of operations (its
  /// kernels fuse some multiply-adds that this rounds twice, so results agree to float
  /// rounding). Two to six FLOP per parameter.
  package func update(
    _ range: Range<Int>, parameters: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>,
    gradientScale: Float, learningRate: Float, weightDecay: Float
  ) {
    let descent = -learningRate
    guard let velocity else {
      for i in range {
        let g = gradient[i] * gradientScale + weightDecay * parameters[i]
        parameters[i] = parameters[i] + descent * g
      }
      return
    }
    let b = velocity.base
    let momentum = self.momentum
    // PyTorch starts the buffer as a copy of the first gradient.
    let first = step == 0
    for i in range {
      let g = gradient[i] * gradientScale + weightDecay * parameters[i]
      let buffer = first ? g : b[i] * momentum + g
      b[i] = buffer
      let direction = nesterov ? g + momentum * buffer : buffer
      parameters[i] = parameters[i] + descent * direction
    }
  }
}
