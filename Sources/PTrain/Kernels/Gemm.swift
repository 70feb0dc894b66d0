/// The vector the GEMM micro-kernel keeps per row: 16 Floats (two AVX2 registers).
/// Every GEMM `n` in the model is a multiple of it.
public typealias GemmLane = SIMD16<Float>

#if PTRAIN_AVX512
  /// Rows of C that one micro-kernel tile holds: 8 rows × 16 columns are 8 AVX-512
  /// accumulators, enough independent chains to cover FMA latency × pipes.
  public let gemmTileRows = 8
#else
  /// Rows of C that one micro-kernel tile holds: 6 rows × 16 columns are 12 AVX2
  /// accumulators, leaving registers for one row of B and a broadcast.
  public let gemmTileRows = 6
#endif

/// General matrix multiply: `C[m×n] = (accumulate ? C : 0) + A[m×k] · B[k×n]`.
///
/// A is read through strides, `A[i][p] = a[i * aRowStride + p * aColStride]`, so one
/// routine serves `A` and `Aᵀ`; B and C are row-major with leading dimensions `ldb` and
/// `ldc`. `n` must be a multiple of `GemmLane.scalarCount`.
///
/// The micro-kernel holds a `gemmTileRows` × 16-column tile of C in registers, broadcasts one
/// A element per row and streams one row of B per step. Rows past `m` in the last tile
/// are clamped onto row `m - 1`: they compute and store the same values twice, which
/// is correct for both modes. Cost: 2·m·n·k FLOP, O(m·n) stores.
@inlinable
public func gemm(
  m: Int, n: Int, k: Int,
  a: UnsafePointer<Float>, aRowStride: Int, aColStride: Int,
  b: UnsafePointer<Float>, ldb: Int,
  c: UnsafeMutablePointer<Float>, ldc: Int,
  accumulate: Bool
) {
  let width = GemmLane.scalarCount
  precondition(n % width == 0, "gemm: n = \(n) is not a multiple of \(width)")
  guard m > 0 else { return }
  var i = 0
  while i < m {
    let a0 = a + i * aRowStride
    let a1 = a + min(i + 1, m - 1) * aRowStride
    let a2 = a + min(i + 2, m - 1) * aRowStride
    let a3 = a + min(i + 3, m - 1) * aRowStride
    let a4 = a + min(i + 4, m - 1) * aRowStride
    let a5 = a + min(i + 5, m - 1) * aRowStride
    #if PTRAIN_AVX512
      let a6 = a + min(i + 6, m - 1) * aRowStride
      let a7 = a + min(i + 7, m - 1) * aRowStride
    #endif
    let c0p = UnsafeMutableRawPointer(c + i * ldc)
    let c1p = UnsafeMutableRawPointer(c + min(i + 1, m - 1) * ldc)
    let c2p = UnsafeMutableRawPointer(c + min(i + 2, m - 1) * ldc)
    let c3p = UnsafeMutableRawPointer(c + min(i + 3, m - 1) * ldc)
    let c4p = UnsafeMutableRawPointer(c + min(i + 4, m - 1) * ldc)
    let c5p = UnsafeMutableRawPointer(c + min(i + 5, m - 1) * ldc)
    #if PTRAIN_AVX512
      let c6p = UnsafeMutableRawPointer(c + min(i + 6, m - 1) * ldc)
      let c7p = UnsafeMutableRawPointer(c + min(i + 7, m - 1) * ldc)
    #endif
    var j = 0
    #if PTRAIN_AVX512
      // 8 rows × 32 columns: 16 independent accumulators, twice what FMA latency × pipes
      // needs, and one broadcast of A per two FMAs.
      while j + 2 * width <= n {
        let offset = j * MemoryLayout<Float>.stride
        let next = offset + width * MemoryLayout<Float>.stride
        var c0 = GemmLane()
        var d0 = GemmLane()
        var c1 = GemmLane()
        var d1 = GemmLane()
        var c2 = GemmLane()
        var d2 = GemmLane()
        var c3 = GemmLane()
        var d3 = GemmLane()
        var c4 = GemmLane()
        var d4 = GemmLane()
        var c5 = GemmLane()
        var d5 = GemmLane()
        var c6 = GemmLane()
        var d6 = GemmLane()
        var c7 = GemmLane()
        var d7 = GemmLane()
        if accumulate {
          c0 = c0p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
          d0 = c0p.loadUnaligned(fromByteOffset: next, as: GemmLane.self)
          c1 = c1p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
          d1 = c1p.loadUnaligned(fromByteOffset: next, as: GemmLane.self)
          c2 = c2p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
          d2 = c2p.loadUnaligned(fromByteOffset: next, as: GemmLane.self)
          c3 = c3p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
          d3 = c3p.loadUnaligned(fromByteOffset: next, as: GemmLane.self)
          c4 = c4p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
          d4 = c4p.loadUnaligned(fromByteOffset: next, as: GemmLane.self)
          c5 = c5p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
          d5 = c5p.loadUnaligned(fromByteOffset: next, as: GemmLane.self)
          c6 = c6p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
          d6 = c6p.loadUnaligned(fromByteOffset: next, as: GemmLane.self)
          c7 = c7p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
          d7 = c7p.loadUnaligned(fromByteOffset: next, as: GemmLane.self)
        }
        var bRow = UnsafeRawPointer(b + j)
        var aIndex = 0
        for _ in 0..<k {
          let bv = bRow.loadUnaligned(as: GemmLane.self)
          let bw = bRow.loadUnaligned(fromByteOffset: width * MemoryLayout<Float>.stride, as: GemmLane.self)
          let x0 = a0[aIndex]
          let x1 = a1[aIndex]
          let x2 = a2[aIndex]
          let x3 = a3[aIndex]
          let x4 = a4[aIndex]
          let x5 = a5[aIndex]
          let x6 = a6[aIndex]
          let x7 = a7[aIndex]
          c0 = c0.addingProduct(x0, bv)
          d0 = d0.addingProduct(x0, bw)
          c1 = c1.addingProduct(x1, bv)
          d1 = d1.addingProduct(x1, bw)
          c2 = c2.addingProduct(x2, bv)
          d2 = d2.addingProduct(x2, bw)
          c3 = c3.addingProduct(x3, bv)
          d3 = d3.addingProduct(x3, bw)
          c4 = c4.addingProduct(x4, bv)
          d4 = d4.addingProduct(x4, bw)
          c5 = c5.addingProduct(x5, bv)
          d5 = d5.addingProduct(x5, bw)
          c6 = c6.addingProduct(x6, bv)
          d6 = d6.addingProduct(x6, bw)
          c7 = c7.addingProduct(x7, bv)
          d7 = d7.addingProduct(x7, bw)
          bRow += ldb * MemoryLayout<Float>.stride
          aIndex += aColStride
        }
        // Rows clamped onto m - 1 hold identical values, so the store order does not matter.
        c7p.storeBytes(of: c7, toByteOffset: offset, as: GemmLane.self)
        c7p.storeBytes(of: d7, toByteOffset: next, as: GemmLane.self)
        c6p.storeBytes(of: c6, toByteOffset: offset, as: GemmLane.self)
        c6p.storeBytes(of: d6, toByteOffset: next, as: GemmLane.self)
        c5p.storeBytes(of: c5, toByteOffset: offset, as: GemmLane.self)
        c5p.storeBytes(of: d5, toByteOffset: next, as: GemmLane.self)
        c4p.storeBytes(of: c4, toByteOffset: offset, as: GemmLane.self)
        c4p.storeBytes(of: d4, toByteOffset: next, as: GemmLane.self)
        c3p.storeBytes(of: c3, toByteOffset: offset, as: GemmLane.self)
        c3p.storeBytes(of: d3, toByteOffset: next, as: GemmLane.self)
        c2p.storeBytes(of: c2, toByteOffset: offset, as: GemmLane.self)
        c2p.storeBytes(of: d2, toByteOffset: next, as: GemmLane.self)
        c1p.storeBytes(of: c1, toByteOffset: offset, as: GemmLane.self)
        c1p.storeBytes(of: d1, toByteOffset: next, as: GemmLane.self)
        c0p.storeBytes(of: c0, toByteOffset: offset, as: GemmLane.self)
        c0p.storeBytes(of: d0, toByteOffset: next, as: GemmLane.self)
        j += 2 * width
      }
    #endif
    while j < n {
      let offset = j * MemoryLayout<Float>.stride
      var c0 = GemmLane()
      var c1 = GemmLane()
      var c2 = GemmLane()
      var c3 = GemmLane()
      var c4 = GemmLane()
      var c5 = GemmLane()
      #if PTRAIN_AVX512
        var c6 = GemmLane()
        var c7 = GemmLane()
      #endif
      if accumulate {
        c0 = c0p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
        c1 = c1p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
        c2 = c2p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
        c3 = c3p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
        c4 = c4p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
        c5 = c5p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
        #if PTRAIN_AVX512
          c6 = c6p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
          c7 = c7p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
        #endif
      }
      var bRow = UnsafeRawPointer(b + j)
      var aIndex = 0
      for _ in 0..<k {
        let bv = bRow.loadUnaligned(as: GemmLane.self)
        c0 = c0.addingProduct(a0[aIndex], bv)
        c1 = c1.addingProduct(a1[aIndex], bv)
        c2 = c2.addingProduct(a2[aIndex], bv)
        c3 = c3.addingProduct(a3[aIndex], bv)
        c4 = c4.addingProduct(a4[aIndex], bv)
        c5 = c5.addingProduct(a5[aIndex], bv)
        #if PTRAIN_AVX512
          c6 = c6.addingProduct(a6[aIndex], bv)
          c7 = c7.addingProduct(a7[aIndex], bv)
        #endif
        bRow += ldb * MemoryLayout<Float>.stride
        aIndex += aColStride
      }
      c5p.storeBytes(of: c5, toByteOffset: offset, as: GemmLane.self)
      #if PTRAIN_AVX512
        c6p.storeBytes(of: c6, toByteOffset: offset, as: GemmLane.self)
        c7p.storeBytes(of: c7, toByteOffset: offset, as: GemmLane.self)
      #endif
      c4p.storeBytes(of: c4, toByteOffset: offset, as: GemmLane.self)
      c3p.storeBytes(of: c3, toByteOffset: offset, as: GemmLane.self)
      c2p.storeBytes(of: c2, toByteOffset: offset, as: GemmLane.self)
      c1p.storeBytes(of: c1, toByteOffset: offset, as: GemmLane.self)
      c0p.storeBytes(of: c0, toByteOffset: offset, as: GemmLane.self)
      j += width
    }
    i += gemmTileRows
  }
}
