/// Consecutive runs of at most `size` slots from `start` to `end`.
struct SlotRuns: Sequence, IteratorProtocol {
  var start: Int
  let end: Int
  let size: Int

  mutating func next() -> Range<Int>? {
    guard start < end else { return nil }
    defer { start = Swift.min(start + size, end) }
    return start..<Swift.min(start + size, end)
  }
}
