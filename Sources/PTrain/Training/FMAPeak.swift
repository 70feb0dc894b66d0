/// The machine's measured fused multiply-add peak, the yardstick for kernel efficiency.
package enum FMAPeak {
  #if PTRAIN_AVX512
    /// One AVX-512 register.
    typealias Lane = SIMD16<Float>
  #else
    /// One AVX2 register.
    typealias Lane = SIMD8<Float>
  #endif

  /// GFLOP/s of vector fused multiply-adds with all of `pool`'s workers running at once:
  /// the best of `repetitions` runs, since a peak is a best case and a shared machine can
  /// steal a core for part of one run. Each worker keeps 10 independent accumulator chains
  /// of one register each: more than FMA latency × pipes (4 × 2) on current x86 cores, and
  /// few enough that nothing spills. Cost: `repetitions` × `iterations` × 10 FMAs per
  /// worker (≈ 0.2 s by default).
  package static func measure(pool: WorkerPool, iterations: Int = 2_000_000, repetitions: Int = 5) -> Double {
    (0..<max(repetitions, 1)).map { _ in measureOnce(pool: pool, iterations: iterations) }.max()!
  }

  /// One timed run of `measure`.
  static func measureOnce(pool: WorkerPool, iterations: Int) -> Double {
    var sinks = [Float](repeating: 0, count: pool.count)
    let start = monotonicNanoseconds()
    sinks.withUnsafeMutableBufferPointer { sinks in
      nonisolated(unsafe) let sinks = sinks  // each worker writes only its own element
      pool.run { worker in
        let x = Lane(repeating: 0.999_9)
        let y = Lane(repeating: 1e-6)
        var a0 = Lane(repeating: Float(worker))
        var (a1, a2, a3, a4, a5, a6, a7, a8, a9) = (a0, a0, a0, a0, a0, a0, a0, a0, a0)
        for _ in 0..<iterations {
          a0 = a0.addingProduct(x, y)
          a1 = a1.addingProduct(x, y)
          a2 = a2.addingProduct(x, y)
          a3 = a3.addingProduct(x, y)
          a4 = a4.addingProduct(x, y)
          a5 = a5.addingProduct(x, y)
          a6 = a6.addingProduct(x, y)
          a7 = a7.addingProduct(x, y)
          a8 = a8.addingProduct(x, y)
          a9 = a9.addingProduct(x, y)
        }
        sinks[worker] = (a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9).sum()
      }
    }
    let seconds = Double(monotonicNanoseconds() - start) * 1e-9
    let flops = Double(pool.count) * Double(iterations) * 10 * Double(Lane.scalarCount) * 2
    return sinks.contains(.nan) ? 0 : flops / seconds / 1e9
  }
}
