/// The vector the GEMM micro-kernel keeps per row: 16 Floats (two AVX2 registers).
/// GEMM columns come in whole vectors of it, and the last few, if any, one by one.
package typealias GemmLane = SIMD16<Float>

/// Row counts of C that one micro-kernel tile may hold, largest first. With AVX-512,
/// 8 rows × 16 columns are 8 accumulators, enough independent chains to cover FMA
/// latency × pipes, and 32 registers leave room for 8 rows × 32 columns. With AVX2, 6 rows
/// × 16 columns are 12 accumulators, leaving registers for one row of B and a broadcast.
@inline(__always)
package func gemmTileRowChoices() -> (Int, Int, Int) {
  #if PTRAIN_AVX512
    (8, 7, 6)
  #else
    (6, 5, 4)
  #endif
}

/// The height of the next micro-kernel tile when `remaining` rows of C are left: the
/// largest of `choices` (`gemmTileRowChoices()` or `gemmWideTileRowChoices()`) that
/// leaves a count the three heights cover exactly, so that as many rows as possible run
/// in the tallest tile (the most accumulators) and none are computed twice: 32 rows go 6+6+6+6+4+4 with AVX2, 49 go 8+8+8+7+6+6+6 with
/// AVX-512. Where no height leaves such a count (7 rows with AVX2), the smallest height,
/// which computes the fewest rows twice. Cost: O(1).
@inline(__always)
package func gemmNextTileRows(remaining: Int, choices: (Int, Int, Int) = gemmTileRowChoices()) -> Int {
  let (large, middle, small) = choices
  // q tiles of small ... large rows cover exactly the counts q·small ... q·large; the
  // heights are consecutive, so a count is covered iff the fewest tiles that reach it
  // (⌈count / large⌉) do not already exceed it at the smallest height.
  @inline(__always) func coveredExactly(_ rows: Int) -> Bool {
    rows == 0 || (rows + large - 1) / large * small <= rows
  }
  if remaining >= large && coveredExactly(remaining - large) { return large }
  if remaining >= middle && coveredExactly(remaining - middle) { return middle }
  return small
}

/// General matrix multiply: `C[m×n] = (accumulate ? C : 0) + A[m×k] · B[k×n]`.
///
/// A is read through strides, `A[i][p] = a[i * aRowStride + p * aColStride]`, so one
/// routine serves `A` and `Aᵀ`; B and C are row-major with leading dimensions `ldb` and
/// `ldc`. Columns past the last multiple of `GemmLane.scalarCount` are done one at a
/// time (`gemmTailColumns`), also adding their k products in order.
///
/// The micro-kernel holds a `gemmNextTileRows(remaining:)` × 16-column tile of C in registers (× 32
/// with AVX-512), broadcasts one A element per row and streams one row of B per step.
/// With AVX-512, whole multiples of 64 columns go first to `gemmWideRowTiles` (up to 6 rows
/// × 64 columns), and the rest to those tiles; a product 16 wide and 16 deep goes to
/// `gemmRegisterRows` instead.
/// Rows past `m` in the last tile are clamped onto row `m - 1`: they compute and store the
/// same values twice, which is correct for both modes. Every element of C adds its k
/// products in order whatever the tile, so the bits do not depend on the tiling.
/// Cost: 2·m·n·k FLOP, O(m·n) stores.
@_spi(Kernels) public func gemm(
  m: Int, n: Int, k: Int,
  a: UnsafePointer<Float>, aRowStride: Int, aColStride: Int,
  b: UnsafePointer<Float>, ldb: Int,
  c: UnsafeMutablePointer<Float>, ldc: Int,
  accumulate: Bool
) {
  let width = GemmLane.scalarCount
  guard m > 0 else { return }
  #if PTRAIN_AVX512
    if n == gemmRegisterWidth && k == gemmRegisterWidth {
      gemmRegisterRows(
        m: m, a: a, aRowStride: aRowStride, aColStride: aColStride, b: b, ldb: ldb, c: c, ldc: ldc,
        accumulate: accumulate)
      return
    }
  #endif
  let tail = n % width
  if tail > 0 {
    gemmTailColumns(
      m: m, columns: (n - tail)..<n, k: k, a: a, aRowStride: aRowStride, aColStride: aColStride, b: b, ldb: ldb, c: c,
      ldc: ldc, accumulate: accumulate)
  }
  var n = n - tail
  guard n > 0 else { return }
  var b = b
  var c = c
  #if PTRAIN_AVX512
    let wide = n / gemmWideColumns * gemmWideColumns
    if wide > 0 {
      gemmWideRowTiles(
        m: m, n: wide, k: k, a: a, aRowStride: aRowStride, aColStride: aColStride, b: b, ldb: ldb, c: c, ldc: ldc,
        accumulate: accumulate)
      n -= wide
      b += wide
      c += wide
      guard n > 0 else { return }
    }
  #endif
  var i = 0
  while i < m {
    // One compiled instance of the micro-kernel per row count, each with its row count
    // a constant.
    let rows = gemmNextTileRows(remaining: m - i)
    let (large, middle, _) = gemmTileRowChoices()
    if rows == large {
      gemmTileLarge(i, m, n, k, a, aRowStride, aColStride, b, ldb, c, ldc, accumulate)
    } else if rows == middle {
      gemmTileMiddle(i, m, n, k, a, aRowStride, aColStride, b, ldb, c, ldc, accumulate)
    } else {
      gemmTileSmall(i, m, n, k, a, aRowStride, aColStride, b, ldb, c, ldc, accumulate)
    }
    i += rows
  }
}

/// The columns of `gemm` past its last full vector: each element of C adds its k
/// products in order with fused multiply-adds. Cost: 2·m·columns·k FLOP, scalar.
@inline(never)
func gemmTailColumns(
  m: Int, columns: Range<Int>, k: Int, a: UnsafePointer<Float>, aRowStride: Int, aColStride: Int,
  b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool
) {
  for i in 0..<m {
    for j in columns {
      var sum: Float = accumulate ? c[i * ldc + j] : 0
      for p in 0..<k { sum = sum.addingProduct(a[i * aRowStride + p * aColStride], b[p * ldb + j]) }
      c[i * ldc + j] = sum
    }
  }
}

/// `gemmTile` with each of `gemmTileRowChoices()` as a constant, compiled once here.
@inline(never)
func gemmTileLarge(
  _ i: Int, _ m: Int, _ n: Int, _ k: Int, _ a: UnsafePointer<Float>, _ aRowStride: Int, _ aColStride: Int,
  _ b: UnsafePointer<Float>, _ ldb: Int, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ accumulate: Bool
) {
  gemmTile(rows: gemmTileRowChoices().0, i, m, n, k, a, aRowStride, aColStride, b, ldb, c, ldc, accumulate)
}

@inline(never)
func gemmTileMiddle(
  _ i: Int, _ m: Int, _ n: Int, _ k: Int, _ a: UnsafePointer<Float>, _ aRowStride: Int, _ aColStride: Int,
  _ b: UnsafePointer<Float>, _ ldb: Int, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ accumulate: Bool
) {
  gemmTile(rows: gemmTileRowChoices().1, i, m, n, k, a, aRowStride, aColStride, b, ldb, c, ldc, accumulate)
}

@inline(never)
func gemmTileSmall(
  _ i: Int, _ m: Int, _ n: Int, _ k: Int, _ a: UnsafePointer<Float>, _ aRowStride: Int, _ aColStride: Int,
  _ b: UnsafePointer<Float>, _ ldb: Int, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ accumulate: Bool
) {
  gemmTile(rows: gemmTileRowChoices().2, i, m, n, k, a, aRowStride, aColStride, b, ldb, c, ldc, accumulate)
}

/// One row tile of `gemm`: rows `i ..< i + rows` of C (clamped to `m - 1`), all columns.
/// `rows` is a constant at each call site, so the rows it leaves out compile away.
@inline(__always)
func gemmTile(
  rows: Int, _ i: Int, _ m: Int, _ n: Int, _ k: Int,
  _ a: UnsafePointer<Float>, _ aRowStride: Int, _ aColStride: Int,
  _ b: UnsafePointer<Float>, _ ldb: Int,
  _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ accumulate: Bool
) {
  let width = GemmLane.scalarCount
  let lane = width * MemoryLayout<Float>.stride
  let a0 = a + min(i + 0, m - 1) * aRowStride
  let a1 = a + min(i + 1, m - 1) * aRowStride
  let a2 = a + min(i + 2, m - 1) * aRowStride
  let a3 = a + min(i + 3, m - 1) * aRowStride
  let a4 = a + min(i + 4, m - 1) * aRowStride
  let a5 = a + min(i + 5, m - 1) * aRowStride
  let a6 = a + min(i + 6, m - 1) * aRowStride
  let a7 = a + min(i + 7, m - 1) * aRowStride
  let c0p = UnsafeMutableRawPointer(c + min(i + 0, m - 1) * ldc)
  let c1p = UnsafeMutableRawPointer(c + min(i + 1, m - 1) * ldc)
  let c2p = UnsafeMutableRawPointer(c + min(i + 2, m - 1) * ldc)
  let c3p = UnsafeMutableRawPointer(c + min(i + 3, m - 1) * ldc)
  let c4p = UnsafeMutableRawPointer(c + min(i + 4, m - 1) * ldc)
  let c5p = UnsafeMutableRawPointer(c + min(i + 5, m - 1) * ldc)
  let c6p = UnsafeMutableRawPointer(c + min(i + 6, m - 1) * ldc)
  let c7p = UnsafeMutableRawPointer(c + min(i + 7, m - 1) * ldc)
  var j = 0
  #if PTRAIN_AVX512
    // Up to 8 rows × 32 columns: 16 independent accumulators, twice what FMA latency ×
    // pipes needs, and one broadcast of A per two FMAs.
    while j + 2 * width <= n {
      let offset = j * MemoryLayout<Float>.stride
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
        d0 = c0p.loadUnaligned(fromByteOffset: offset + lane, as: GemmLane.self)
        c1 = c1p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
        d1 = c1p.loadUnaligned(fromByteOffset: offset + lane, as: GemmLane.self)
        c2 = c2p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
        d2 = c2p.loadUnaligned(fromByteOffset: offset + lane, as: GemmLane.self)
        c3 = c3p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
        d3 = c3p.loadUnaligned(fromByteOffset: offset + lane, as: GemmLane.self)
        if rows > 4 {
          c4 = c4p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
          d4 = c4p.loadUnaligned(fromByteOffset: offset + lane, as: GemmLane.self)
        }
        if rows > 5 {
          c5 = c5p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
          d5 = c5p.loadUnaligned(fromByteOffset: offset + lane, as: GemmLane.self)
        }
        if rows > 6 {
          c6 = c6p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
          d6 = c6p.loadUnaligned(fromByteOffset: offset + lane, as: GemmLane.self)
        }
        if rows > 7 {
          c7 = c7p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
          d7 = c7p.loadUnaligned(fromByteOffset: offset + lane, as: GemmLane.self)
        }
      }
      var bRow = UnsafeRawPointer(b + j)
      var aIndex = 0
      for _ in 0..<k {
        let bv = bRow.loadUnaligned(as: GemmLane.self)
        let bw = bRow.loadUnaligned(fromByteOffset: lane, as: GemmLane.self)
        let x0 = a0[aIndex]
        c0 = c0.addingProduct(x0, bv)
        d0 = d0.addingProduct(x0, bw)
        let x1 = a1[aIndex]
        c1 = c1.addingProduct(x1, bv)
        d1 = d1.addingProduct(x1, bw)
        let x2 = a2[aIndex]
        c2 = c2.addingProduct(x2, bv)
        d2 = d2.addingProduct(x2, bw)
        let x3 = a3[aIndex]
        c3 = c3.addingProduct(x3, bv)
        d3 = d3.addingProduct(x3, bw)
        if rows > 4 {
          let x = a4[aIndex]
          c4 = c4.addingProduct(x, bv)
          d4 = d4.addingProduct(x, bw)
        }
        if rows > 5 {
          let x = a5[aIndex]
          c5 = c5.addingProduct(x, bv)
          d5 = d5.addingProduct(x, bw)
        }
        if rows > 6 {
          let x = a6[aIndex]
          c6 = c6.addingProduct(x, bv)
          d6 = d6.addingProduct(x, bw)
        }
        if rows > 7 {
          let x = a7[aIndex]
          c7 = c7.addingProduct(x, bv)
          d7 = d7.addingProduct(x, bw)
        }
        bRow += ldb * MemoryLayout<Float>.stride
        aIndex += aColStride
      }
      // Rows clamped onto m - 1 hold identical values, so the store order does not matter.
      if rows > 7 {
        c7p.storeBytes(of: c7, toByteOffset: offset, as: GemmLane.self)
        c7p.storeBytes(of: d7, toByteOffset: offset + lane, as: GemmLane.self)
      }
      if rows > 6 {
        c6p.storeBytes(of: c6, toByteOffset: offset, as: GemmLane.self)
        c6p.storeBytes(of: d6, toByteOffset: offset + lane, as: GemmLane.self)
      }
      if rows > 5 {
        c5p.storeBytes(of: c5, toByteOffset: offset, as: GemmLane.self)
        c5p.storeBytes(of: d5, toByteOffset: offset + lane, as: GemmLane.self)
      }
      if rows > 4 {
        c4p.storeBytes(of: c4, toByteOffset: offset, as: GemmLane.self)
        c4p.storeBytes(of: d4, toByteOffset: offset + lane, as: GemmLane.self)
      }
      c3p.storeBytes(of: c3, toByteOffset: offset, as: GemmLane.self)
      c3p.storeBytes(of: d3, toByteOffset: offset + lane, as: GemmLane.self)
      c2p.storeBytes(of: c2, toByteOffset: offset, as: GemmLane.self)
      c2p.storeBytes(of: d2, toByteOffset: offset + lane, as: GemmLane.self)
      c1p.storeBytes(of: c1, toByteOffset: offset, as: GemmLane.self)
      c1p.storeBytes(of: d1, toByteOffset: offset + lane, as: GemmLane.self)
      c0p.storeBytes(of: c0, toByteOffset: offset, as: GemmLane.self)
      c0p.storeBytes(of: d0, toByteOffset: offset + lane, as: GemmLane.self)
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
    var c6 = GemmLane()
    var c7 = GemmLane()
    if accumulate {
      c0 = c0p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
      c1 = c1p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
      c2 = c2p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
      c3 = c3p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
      if rows > 4 {
        c4 = c4p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
      }
      if rows > 5 {
        c5 = c5p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
      }
      if rows > 6 {
        c6 = c6p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
      }
      if rows > 7 {
        c7 = c7p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self)
      }
    }
    var bRow = UnsafeRawPointer(b + j)
    var aIndex = 0
    for _ in 0..<k {
      let bv = bRow.loadUnaligned(as: GemmLane.self)
      c0 = c0.addingProduct(a0[aIndex], bv)
      c1 = c1.addingProduct(a1[aIndex], bv)
      c2 = c2.addingProduct(a2[aIndex], bv)
      c3 = c3.addingProduct(a3[aIndex], bv)
      if rows > 4 {
        c4 = c4.addingProduct(a4[aIndex], bv)
      }
      if rows > 5 {
        c5 = c5.addingProduct(a5[aIndex], bv)
      }
      if rows > 6 {
        c6 = c6.addingProduct(a6[aIndex], bv)
      }
      if rows > 7 {
        c7 = c7.addingProduct(a7[aIndex], bv)
      }
      bRow += ldb * MemoryLayout<Float>.stride
      aIndex += aColStride
    }
    if rows > 7 {
      c7p.storeBytes(of: c7, toByteOffset: offset, as: GemmLane.self)
    }
    if rows > 6 {
      c6p.storeBytes(of: c6, toByteOffset: offset, as: GemmLane.self)
    }
    if rows > 5 {
      c5p.storeBytes(of: c5, toByteOffset: offset, as: GemmLane.self)
    }
    if rows > 4 {
      c4p.storeBytes(of: c4, toByteOffset: offset, as: GemmLane.self)
    }
    c3p.storeBytes(of: c3, toByteOffset: offset, as: GemmLane.self)
    c2p.storeBytes(of: c2, toByteOffset: offset, as: GemmLane.self)
    c1p.storeBytes(of: c1, toByteOffset: offset, as: GemmLane.self)
    c0p.storeBytes(of: c0, toByteOffset: offset, as: GemmLane.self)
    j += width
  }
}
