/// The engine's only source of randomness: xoshiro256** seeded through SplitMix64.
///
/// Initialisation and every epoch's shuffle draw from one generator in a fixed order,
/// so a seed fixes the whole run whatever the thread count. Its state is four words,
/// which checkpoints can store.
package struct SeededGenerator: RandomNumberGenerator, Equatable, Sendable {
  /// The four 64-bit words of xoshiro256** state.
  package var state: (UInt64, UInt64, UInt64, UInt64)

  package init(seed: UInt64) {
    var x = seed
    func splitMix() -> UInt64 {
      x &+= 0x9E37_79B9_7F4A_7C15
      var z = x
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      return z ^ (z >> 31)
    }
    state = (splitMix(), splitMix(), splitMix(), splitMix())
  }

  package static func == (lhs: SeededGenerator, rhs: SeededGenerator) -> Bool {
    lhs.state == rhs.state
  }

  /// The next 64 random bits. Cost: a handful of integer operations.
  package mutating func next() -> UInt64 {
    let result = ((state.1 &* 5) << 7 | (state.1 &* 5) >> 57) &* 9
    let t = state.1 << 17
    state.2 ^= state.0
    state.3 ^= state.1
    state.1 ^= state.2
    state.0 ^= state.3
    state.2 ^= t
    state.3 = state.3 << 45 | state.3 >> 19
    return result
  }

  /// A uniform Float in [0, 1) with 24 random bits.
  package mutating func nextUnitFloat() -> Float {
    Float(next() >> 40) * 0x1p-24
  }

  /// A uniform integer in 0..<bound, unbiased (rejection sampling). `bound` must be > 0.
  package mutating func nextIndex(below bound: Int) -> Int {
    let range = UInt64(bound)
    let limit = UInt64.max - UInt64.max % range
    while true {
      let value = next()
      if value < limit { return Int(value % range) }
    }
  }

  /// Shuffles `array` in place with Fisher–Yates, drawing `array.count - 1` indices.
  package mutating func shuffle<T>(_ array: inout [T]) {
    guard array.count > 1 else { return }
    for i in stride(from: array.count - 1, to: 0, by: -1) {
      array.swapAt(i, nextIndex(below: i + 1))
    }
  }
}
