// Inverted dropout whose mask is a pure function of (seed, global step, image position in
// the batch, layer, element): a counter-based generator, not a stream. No thread count,
// shard split or resume can change which values are dropped, and the backward pass
// recomputes the mask instead of storing it.

/// The key of one image's masks in one layer at one step, from which `dropoutKeeps`
/// draws each element. Cost: a few integer operations.
package func dropoutKey(seed: UInt64, step: Int, position: Int, layer: Int) -> UInt64 {
  var key = splitMix64(seed ^ 0x6472_6F70_6F75_7421)  // "dropout!"
  key = splitMix64(key ^ UInt64(truncatingIfNeeded: step))
  key = splitMix64(key ^ UInt64(truncatingIfNeeded: position))
  return splitMix64(key ^ UInt64(truncatingIfNeeded: layer))
}

/// SplitMix64's finaliser: a bijective mix of 64 bits. Cost: a few integer operations.
@inline(__always)
package func splitMix64(_ value: UInt64) -> UInt64 {
  var z = value &+ 0x9E37_79B9_7F4A_7C15
  z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
  z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
  return z ^ (z >> 31)
}

/// The factor of element `index` under the mask `key`: 0 with probability `rate` (drawn
/// as 24 bits against `threshold = rate · 2²⁴`), else `scale = 1 / (1 − rate)`.
@inline(__always)
func dropoutFactor(key: UInt64, index: Int, threshold: UInt64, scale: Float) -> Float {
  splitMix64(key &+ UInt64(truncatingIfNeeded: index)) >> 40 < threshold ? 0 : scale
}

/// Forward in training: `output[i] = input[i] · factor(i)`. Cost: one hash per value.
@_spi(Kernels) public func dropoutForward(
  _ input: UnsafePointer<Float>, count: Int, rate: Float, key: UInt64, output: UnsafeMutablePointer<Float>
) {
  let threshold = UInt64((Double(rate) * 16_777_216).rounded())
  let scale = 1 / (1 - rate)
  for i in 0..<count { output[i] = input[i] * dropoutFactor(key: key, index: i, threshold: threshold, scale: scale) }
}

/// Backward in place: `gradient[i] *= factor(i)`, the same mask as `dropoutForward` drew.
/// Cost: one hash per value.
@_spi(Kernels) public func dropoutBackward(_ gradient: UnsafeMutablePointer<Float>, count: Int, rate: Float, key: UInt64) {
  let threshold = UInt64((Double(rate) * 16_777_216).rounded())
  let scale = 1 / (1 - rate)
  for i in 0..<count { gradient[i] *= dropoutFactor(key: key, index: i, threshold: threshold, scale: scale) }
}
