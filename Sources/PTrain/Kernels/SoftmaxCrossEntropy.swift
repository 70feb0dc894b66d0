#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Softmax cross-entropy fused with its gradient, for one example, with label smoothing ε
/// as `CrossEntropyLoss(label_smoothing=ε)` computes it.
///
/// Returns `(1 − ε)(−log p[label]) + ε · mean_k(−log p[k])` with `p = softmax(logits)`,
/// computed stably from `logsumexp(z)`, and overwrites `gradient` with
/// `p − (1 − ε)·onehot(label) − ε/classes`. Cost: O(classes) with one exp per class and one log.
@_spi(Kernels) public func softmaxCrossEntropy(
  logits: UnsafePointer<Float>, classes: Int, label: Int, gradient: UnsafeMutablePointer<Float>,
  smoothing: Float = 0
) -> Float {
  let (peak, total) = softmax(logits: logits, classes: classes, into: gradient)
  guard smoothing > 0 else {
    gradient[label] -= 1
    return logf(total) - (logits[label] - peak)
  }
  let spread = smoothing / Float(classes)
  var shiftedSum: Float = 0
  for c in 0..<classes {
    gradient[c] -= spread
    shiftedSum += logits[c] - peak
  }
  gradient[label] -= 1 - smoothing
  let logTotal = logf(total)
  return (1 - smoothing) * (logTotal - (logits[label] - peak)) + smoothing * (logTotal - shiftedSum / Float(classes))
}

/// The index of the largest logit (the first one on ties). Cost: O(classes).
/// Writes `softmax(logits)` into `probabilities`, computed stably as
/// `exp(z − peak) / total` with `peak = max(z)` and `total = Σ exp(z − peak)`, and returns
/// `peak` and `total`. Cost: O(classes) with one exp per class.
@_spi(Kernels) public func softmax(
  logits: UnsafePointer<Float>, classes: Int, into probabilities: UnsafeMutablePointer<Float>
) -> (peak: Float, total: Float) {
  var peak = logits[0]
  for c in 1..<classes { peak = max(peak, logits[c]) }
  var total: Float = 0
  for c in 0..<classes {
    let e = expf(logits[c] - peak)
    probabilities[c] = e
    total += e
  }
  let inverse = 1 / total
  for c in 0..<classes { probabilities[c] *= inverse }
  return (peak, total)
}

package func argmax(_ values: UnsafePointer<Float>, count: Int) -> Int {
  var best = 0
  for i in 1..<count where values[i] > values[best] { best = i }
  return best
}
