// With AVX-512, a GEMM one vector wide and one vector deep (n = k = 16: `resnet-20`'s
// 16-channel Winograd points, forward and input gradient) keeps all of B in registers.

#if PTRAIN_AVX512
  /// The width and depth of the products `gemmRegisterRows` serves: one vector.
  let gemmRegisterWidth = GemmLane.scalarCount

  /// `C[m×16] = (accumulate ? C : 0) + A[m×16] · B[16×16]`, A read through strides as in
  /// `gemm`, with B's 16 rows held in registers: each row of C is one chain of 16 FMAs,
  /// each broadcasting one element of A from memory. That is one load per FMA, where
  /// `gemm`'s 8 × 16 tiles make 9 loads per 8 FMAs and start their 16-step k loop again
  /// every 8 rows. Four rows' chains run interleaved. Each element adds its 16 products in
  /// k order, from zero or from C: `gemm`'s bits. Cost: 512·m FLOP.
  func gemmRegisterRows(
    m: Int, a: UnsafePointer<Float>, aRowStride: Int, aColStride: Int, b: UnsafePointer<Float>, ldb: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool
  ) {
    @inline(__always) func row(_ p: Int) -> GemmLane { UnsafeRawPointer(b + p * ldb).loadUnaligned(as: GemmLane.self) }
    let (b0, b1, b2, b3, b4, b5, b6, b7) = (row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7))
    let (b8, b9, b10, b11, b12, b13, b14, b15) = (
      row(8), row(9), row(10), row(11), row(12), row(13), row(14), row(15)
    )
    /// Rows `i ..< i + rows` of C, their chains interleaved so that their FMAs overlap.
    @inline(__always) func rowChains(_ i: Int, _ rows: Int) {
      var sums = (GemmLane(), GemmLane(), GemmLane(), GemmLane())
      @inline(__always) func sum(_ r: Int) -> GemmLane {
        r == 0 ? sums.0 : r == 1 ? sums.1 : r == 2 ? sums.2 : sums.3
      }
      @inline(__always) func set(_ r: Int, _ value: GemmLane) {
        switch r {
        case 0: sums.0 = value
        case 1: sums.1 = value
        case 2: sums.2 = value
        default: sums.3 = value
        }
      }
      if accumulate {
        for r in 0..<rows { set(r, UnsafeRawPointer(c + (i + r) * ldc).loadUnaligned(as: GemmLane.self)) }
      }
      @inline(__always) func step(_ p: Int, _ bp: GemmLane) {
        for r in 0..<rows { set(r, sum(r).addingProduct(a[(i + r) * aRowStride + p * aColStride], bp)) }
      }
      step(0, b0)
      step(1, b1)
      step(2, b2)
      step(3, b3)
      step(4, b4)
      step(5, b5)
      step(6, b6)
      step(7, b7)
      step(8, b8)
      step(9, b9)
      step(10, b10)
      step(11, b11)
      step(12, b12)
      step(13, b13)
      step(14, b14)
      step(15, b15)
      for r in 0..<rows { UnsafeMutableRawPointer(c + (i + r) * ldc).storeBytes(of: sum(r), as: GemmLane.self) }
    }
    let interleaved = 4
    var i = 0
    while i + interleaved <= m {
      rowChains(i, interleaved)
      i += interleaved
    }
    while i < m {
      rowChains(i, 1)
      i += 1
    }
  }
#endif
