#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Softmax cross-entropy fused with its gradient, for one example.
///
/// Returns `-log softmax(logits)[label]`, computed stably as `logsumexp(z) - z[label]`,
/// and overwrites `gradient` with `softmax(logits) - onehot(label)`. Cost: O(classes)
/// with one exp per class and one log.
@_spi(Kernels) public func softmaxCrossEntropy(
  logits: UnsafePointer<Float>, classes: Int, label: Int, gradient: UnsafeMutablePointer<Float>
) -> Float {
  var peak = logits[0]
  for c in 1..<classes { peak = max(peak, logits[c]) }
  var total: Float = 0
  for c in 0..<classes {
    let e = expf(logits[c] - peak)
    gradient[c] = e
    total += e
  }
  let inverse = 1 / total
  for c in 0..<classes { gradient[c] *= inverse }
  gradient[label] -= 1
  return logf(total) - (logits[label] - peak)
}

/// The index of the largest logit (the first one on ties). Cost: O(classes).
package func argmax(_ values: UnsafePointer<Float>, count: Int) -> Int {
  var best = 0
  for i in 1..<count where values[i] > values[best] { best = i }
  return best
}
