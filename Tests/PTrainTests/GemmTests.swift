@_spi(Kernels) import PTrain
import XCTest

/// GEMM against the naive product.
final class GemmTests: KernelTestCase {
  func testGemmTilesCoverRowsWithTheFewestRowsComputedTallestFirst() {
    let (large, middle, small) = gemmTileRowChoices()
    for m in 1...200 {
      var heights: [Int] = []
      var remaining = m
      while remaining > 0 {
        heights.append(gemmNextTileRows(remaining: remaining))
        remaining -= heights.last!
      }
      XCTAssert(heights.allSatisfy { [large, middle, small].contains($0) }, "m = \(m): \(heights)")
      XCTAssertEqual(heights, heights.sorted(by: >), "m = \(m): tallest first")
      // ⌈m / large⌉ tiles at least, each of at least `small` rows: m itself where they fit.
      XCTAssertEqual(heights.reduce(0, +), max(m, (m + large - 1) / large * small), "m = \(m): \(heights)")
      XCTAssertEqual(heights.count, (m + large - 1) / large, "m = \(m): \(heights)")
    }
  }

  func testGemmMatchesNaiveInAllStrideModes() {
    // Row counts that pick each tile height and leave every kind of last tile; n = 48 runs
    // both the 32- and the 16-column loops.
    for m in [1, 5, 7, 9, 12, 13, 32, 36, 49] {
      let n = 48
      let k = 5
      let a = randomFloats(m * k, seed: 1)
      let b = randomFloats(k * n, seed: 2)
      let c0 = randomFloats(m * n, seed: 3)
      let expected = Naive.gemm(a, b, m: m, n: n, k: k)
      let plain = withPointers([a, b, c0]) { p in
        gemm(
          m: m, n: n, k: k, a: p[0], aRowStride: k, aColStride: 1, b: p[1], ldb: n, c: p[2], ldc: n, accumulate: false)
      }[2]
      assertClose(plain, expected, "A·B, m = \(m)")
      let accumulated = withPointers([a, b, c0]) { p in
        gemm(
          m: m, n: n, k: k, a: p[0], aRowStride: k, aColStride: 1, b: p[1], ldb: n, c: p[2], ldc: n, accumulate: true)
      }[2]
      assertClose(accumulated, zip(expected, c0).map(+), "C + A·B, m = \(m)")
      let aT = Naive.transpose(a, rows: m, columns: k)
      let transposed = withPointers([aT, b, c0]) { p in
        gemm(
          m: m, n: n, k: k, a: p[0], aRowStride: 1, aColStride: m, b: p[1], ldb: n, c: p[2], ldc: n, accumulate: false)
      }[2]
      assertClose(transposed, expected, "Aᵀ read through strides, m = \(m)")
      // The bits of a row do not depend on the tile it falls in.
      let lastRow = withPointers([Array(a[((m - 1) * k)...]), b, Array(c0[((m - 1) * n)...])]) { p in
        gemm(
          m: 1, n: n, k: k, a: p[0], aRowStride: k, aColStride: 1, b: p[1], ldb: n, c: p[2], ldc: n, accumulate: true)
      }[2]
      XCTAssertEqual(lastRow, Array(accumulated[((m - 1) * n)...]), "last row alone, m = \(m)")
    }
  }
}
