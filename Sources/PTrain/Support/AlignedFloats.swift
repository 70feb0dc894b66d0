/// A zero-initialised, 64-byte-aligned array of Floats with a stable address.
///
/// Kernels work on raw pointers into these buffers, so hot loops never meet Array's
/// copy-on-write checks. The memory is first touched by the thread that creates the
/// buffer, which places it on that thread's NUMA node.
///
/// `@unchecked Sendable` because workers share one buffer through `base`: the class
/// itself never changes after `init`, and its users keep each element written by at most
/// one thread between two synchronisation points (a barrier, or the end of
/// `WorkerPool.run`), as the trainer's step does.
package final class AlignedFloats: @unchecked Sendable {
  /// The number of Floats.
  package let count: Int
  /// The first Float; valid for `count` elements until the buffer is released.
  package let base: UnsafeMutablePointer<Float>

  /// Allocates `count` Floats set to zero. Cost: O(count).
  package init(count: Int) {
    self.count = count
    let raw = UnsafeMutableRawPointer.allocate(
      byteCount: max(count, 1) * MemoryLayout<Float>.stride, alignment: 64)
    base = raw.bindMemory(to: Float.self, capacity: max(count, 1))
    base.initialize(repeating: 0, count: max(count, 1))
  }

  deinit { base.deallocate() }

  /// Sets every element to zero. Cost: O(count).
  package func zero() { base.update(repeating: 0, count: count) }

  /// A copy of the contents as an Array. Cost: O(count).
  package var array: [Float] { Array(UnsafeBufferPointer(start: base, count: count)) }

  /// Replaces the contents with `values`, which must have `count` elements.
  package func copy(from values: [Float]) {
    precondition(values.count == count, "expected \(count) values, got \(values.count)")
    values.withUnsafeBufferPointer { base.update(from: $0.baseAddress!, count: count) }
  }
}

/// `value` rounded up to a multiple of `multiple`.
func roundUp(_ value: Int, toMultipleOf multiple: Int) -> Int {
  (value + multiple - 1) / multiple * multiple
}
