/// Row counts of `gemmWideRowTiles`' tiles, largest first: 6 rows × 4 vectors are 24
/// accumulators, with 4 registers for a row of B, and each broadcast of A feeds 4 FMAs.
@inline(__always)
package func gemmWideTileRowChoices() -> (Int, Int, Int) { (6, 5, 4) }

#if PTRAIN_AVX512
  /// Columns of C that one `gemmWideTile` holds: four vectors.
  let gemmWideColumns = 4 * GemmLane.scalarCount

  /// `gemm`'s columns in whole multiples of `gemmWideColumns`, in row tiles of
  /// `gemmNextTileRows(remaining:choices:)` rows with `gemmWideTileRowChoices()`. Each
  /// broadcast of A from memory feeds 4 FMAs here, 2 in `gemmTile`'s 8 × 32 tiles: on the
  /// Ice Lake server measured, FMAs that broadcast A from memory ran at half the FMA peak
  /// when each fed one FMA, so at 2 per broadcast the 8 × 32 tiles had no slack.
  /// Every element of C adds its k products in order, so the bits are `gemm`'s.
  /// Cost: 2·m·n·k FLOP.
  func gemmWideRowTiles(
    m: Int, n: Int, k: Int, a: UnsafePointer<Float>, aRowStride: Int, aColStride: Int,
    b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool
  ) {
    var i = 0
    let (large, middle, _) = gemmWideTileRowChoices()
    while i < m {
      let rows = gemmNextTileRows(remaining: m - i, choices: gemmWideTileRowChoices())
      if rows == large {
        gemmWideTileLarge(i, m, n, k, a, aRowStride, aColStride, b, ldb, c, ldc, accumulate)
      } else if rows == middle {
        gemmWideTileMiddle(i, m, n, k, a, aRowStride, aColStride, b, ldb, c, ldc, accumulate)
      } else {
        gemmWideTileSmall(i, m, n, k, a, aRowStride, aColStride, b, ldb, c, ldc, accumulate)
      }
      i += rows
    }
  }

  /// `gemmWideTile` with each of `gemmWideTileRowChoices()` as a constant, compiled once here.
  @inline(never)
  func gemmWideTileLarge(
    _ i: Int, _ m: Int, _ n: Int, _ k: Int, _ a: UnsafePointer<Float>, _ aRowStride: Int, _ aColStride: Int,
    _ b: UnsafePointer<Float>, _ ldb: Int, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ accumulate: Bool
  ) {
    gemmWideTile(rows: gemmWideTileRowChoices().0, i, m, n, k, a, aRowStride, aColStride, b, ldb, c, ldc, accumulate)
  }

  @inline(never)
  func gemmWideTileMiddle(
    _ i: Int, _ m: Int, _ n: Int, _ k: Int, _ a: UnsafePointer<Float>, _ aRowStride: Int, _ aColStride: Int,
    _ b: UnsafePointer<Float>, _ ldb: Int, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ accumulate: Bool
  ) {
    gemmWideTile(rows: gemmWideTileRowChoices().1, i, m, n, k, a, aRowStride, aColStride, b, ldb, c, ldc, accumulate)
  }

  @inline(never)
  func gemmWideTileSmall(
    _ i: Int, _ m: Int, _ n: Int, _ k: Int, _ a: UnsafePointer<Float>, _ aRowStride: Int, _ aColStride: Int,
    _ b: UnsafePointer<Float>, _ ldb: Int, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ accumulate: Bool
  ) {
    gemmWideTile(rows: gemmWideTileRowChoices().2, i, m, n, k, a, aRowStride, aColStride, b, ldb, c, ldc, accumulate)
  }

  /// Rows `i ..< i + rows` of C (clamped to `m - 1`, as in `gemmTile`), all `n` columns
  /// (a multiple of `gemmWideColumns`): 4 vectors of columns at a time.
  @inline(__always)
  func gemmWideTile(
    rows: Int, _ i: Int, _ m: Int, _ n: Int, _ k: Int, _ a: UnsafePointer<Float>, _ aRowStride: Int,
    _ aColStride: Int, _ b: UnsafePointer<Float>, _ ldb: Int, _ c: UnsafeMutablePointer<Float>, _ ldc: Int,
    _ accumulate: Bool
  ) {
    let lane = GemmLane.scalarCount * MemoryLayout<Float>.stride
    @inline(__always) func rowA(_ r: Int) -> UnsafePointer<Float> { a + min(i + r, m - 1) * aRowStride }
    @inline(__always) func rowC(_ r: Int) -> UnsafeMutableRawPointer {
      UnsafeMutableRawPointer(c + min(i + r, m - 1) * ldc)
    }
    let (a0, a1, a2, a3, a4, a5) = (rowA(0), rowA(1), rowA(2), rowA(3), rowA(4), rowA(5))
    let (c0p, c1p, c2p, c3p, c4p, c5p) = (rowC(0), rowC(1), rowC(2), rowC(3), rowC(4), rowC(5))
    var j = 0
    while j + gemmWideColumns <= n {
      let offset = j * MemoryLayout<Float>.stride
      /// Four vectors of one row of C: loaded when accumulating, else zero.
      @inline(__always) func start(_ p: UnsafeMutableRawPointer, _ used: Bool) -> (
        GemmLane, GemmLane, GemmLane, GemmLane
      ) {
        guard accumulate && used else { return (GemmLane(), GemmLane(), GemmLane(), GemmLane()) }
        return (
          p.loadUnaligned(fromByteOffset: offset, as: GemmLane.self),
          p.loadUnaligned(fromByteOffset: offset + lane, as: GemmLane.self),
          p.loadUnaligned(fromByteOffset: offset + 2 * lane, as: GemmLane.self),
          p.loadUnaligned(fromByteOffset: offset + 3 * lane, as: GemmLane.self)
        )
      }
      var (c00, c01, c02, c03) = start(c0p, true)
      var (c10, c11, c12, c13) = start(c1p, true)
      var (c20, c21, c22, c23) = start(c2p, true)
      var (c30, c31, c32, c33) = start(c3p, true)
      var (c40, c41, c42, c43) = start(c4p, rows > 4)
      var (c50, c51, c52, c53) = start(c5p, rows > 5)
      var bRow = UnsafeRawPointer(b + j)
      var aIndex = 0
      for _ in 0..<k {
        let b0 = bRow.loadUnaligned(as: GemmLane.self)
        let b1 = bRow.loadUnaligned(fromByteOffset: lane, as: GemmLane.self)
        let b2 = bRow.loadUnaligned(fromByteOffset: 2 * lane, as: GemmLane.self)
        let b3 = bRow.loadUnaligned(fromByteOffset: 3 * lane, as: GemmLane.self)
        let x0 = a0[aIndex]
        c00 = c00.addingProduct(x0, b0)
        c01 = c01.addingProduct(x0, b1)
        c02 = c02.addingProduct(x0, b2)
        c03 = c03.addingProduct(x0, b3)
        let x1 = a1[aIndex]
        c10 = c10.addingProduct(x1, b0)
        c11 = c11.addingProduct(x1, b1)
        c12 = c12.addingProduct(x1, b2)
        c13 = c13.addingProduct(x1, b3)
        let x2 = a2[aIndex]
        c20 = c20.addingProduct(x2, b0)
        c21 = c21.addingProduct(x2, b1)
        c22 = c22.addingProduct(x2, b2)
        c23 = c23.addingProduct(x2, b3)
        let x3 = a3[aIndex]
        c30 = c30.addingProduct(x3, b0)
        c31 = c31.addingProduct(x3, b1)
        c32 = c32.addingProduct(x3, b2)
        c33 = c33.addingProduct(x3, b3)
        if rows > 4 {
          let x = a4[aIndex]
          c40 = c40.addingProduct(x, b0)
          c41 = c41.addingProduct(x, b1)
          c42 = c42.addingProduct(x, b2)
          c43 = c43.addingProduct(x, b3)
        }
        if rows > 5 {
          let x = a5[aIndex]
          c50 = c50.addingProduct(x, b0)
          c51 = c51.addingProduct(x, b1)
          c52 = c52.addingProduct(x, b2)
          c53 = c53.addingProduct(x, b3)
        }
        bRow += ldb * MemoryLayout<Float>.stride
        aIndex += aColStride
      }
      /// Stores four vectors of one row of C.
      @inline(__always) func store(
        _ p: UnsafeMutableRawPointer, _ v0: GemmLane, _ v1: GemmLane, _ v2: GemmLane, _ v3: GemmLane
      ) {
        p.storeBytes(of: v0, toByteOffset: offset, as: GemmLane.self)
        p.storeBytes(of: v1, toByteOffset: offset + lane, as: GemmLane.self)
        p.storeBytes(of: v2, toByteOffset: offset + 2 * lane, as: GemmLane.self)
        p.storeBytes(of: v3, toByteOffset: offset + 3 * lane, as: GemmLane.self)
      }
      // Rows clamped onto m - 1 hold identical values, so the store order does not matter.
      if rows > 5 { store(c5p, c50, c51, c52, c53) }
      if rows > 4 { store(c4p, c40, c41, c42, c43) }
      store(c3p, c30, c31, c32, c33)
      store(c2p, c20, c21, c22, c23)
      store(c1p, c10, c11, c12, c13)
      store(c0p, c00, c01, c02, c03)
      j += gemmWideColumns
    }
  }
#endif
