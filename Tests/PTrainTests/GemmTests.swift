@_spi(Kernels) import PTrain
import XCTest

/// GEMM against the naive product.
final class GemmTests: KernelTestCase {
  func testGemmTilesCoverRowsWithTheFewestRowsComputedTallestFirst() {
    for choices in [gemmTileRowChoices(), gemmWideTileRowChoices()] {
      assertTilesCoverRows(choices)
    }
  }

  /// Checks the row tiles that `gemmNextTileRows` picks from `choices` for every m up to 200.
  private func assertTilesCoverRows(_ choices: (Int, Int, Int)) {
    let (large, middle, small) = choices
    for m in 1...200 {
      var heights: [Int] = []
      var remaining = m
      while remaining > 0 {
        heights.append(gemmNextTileRows(remaining: remaining, choices: choices))
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
    // both the 32- and the 16-column loops, and n = 179 (two 64-column blocks, then 32,
    // 16 and 3 columns) every kind of column block with AVX-512, the wide tiles included.
    for m in [1, 2, 3, 5, 7, 9, 12, 13, 32, 36, 49] {
      for n in [48, 179] {
        assertGemmMatchesNaive(m: m, n: n, k: 5)
      }
    }
  }

  /// `gemm` of an m × k and a k × n matrix, against the naive product, read both ways.
  private func assertGemmMatchesNaive(m: Int, n: Int, k: Int) {
    let a = randomFloats(m * k, seed: 1)
    let b = randomFloats(k * n, seed: 2)
    let c0 = randomFloats(m * n, seed: 3)
    let expected = Naive.gemm(a, b, m: m, n: n, k: k)
    let plain = withPointers([a, b, c0]) { p in
      gemm(
        m: m, n: n, k: k, a: p[0], aRowStride: k, aColStride: 1, b: p[1], ldb: n, c: p[2], ldc: n, accumulate: false)
    }[2]
    assertClose(plain, expected, "A·B, m = \(m), n = \(n)")
    let accumulated = withPointers([a, b, c0]) { p in
      gemm(
        m: m, n: n, k: k, a: p[0], aRowStride: k, aColStride: 1, b: p[1], ldb: n, c: p[2], ldc: n, accumulate: true)
    }[2]
    assertClose(accumulated, zip(expected, c0).map(+), "C + A·B, m = \(m), n = \(n)")
    let aT = Naive.transpose(a, rows: m, columns: k)
    let transposed = withPointers([aT, b, c0]) { p in
      gemm(
        m: m, n: n, k: k, a: p[0], aRowStride: 1, aColStride: m, b: p[1], ldb: n, c: p[2], ldc: n, accumulate: false)
    }[2]
    assertClose(transposed, expected, "Aᵀ read through strides, m = \(m), n = \(n)")
    // The bits of a row do not depend on the tile it falls in.
    let lastRow = withPointers([Array(a[((m - 1) * k)...]), b, Array(c0[((m - 1) * n)...])]) { p in
      gemm(
        m: 1, n: n, k: k, a: p[0], aRowStride: k, aColStride: 1, b: p[1], ldb: n, c: p[2], ldc: n, accumulate: true)
    }[2]
    XCTAssertEqual(lastRow, Array(accumulated[((m - 1) * n)...]), "last row alone, m = \(m), n = \(n)")
    // Nor those of a column on the kernel: the first 48 columns alone run in the 32- and
    // 16-column tiles, in a call of more than 64 columns in the wide ones.
    let narrow = 48
    guard n > narrow else { return }
    let firstColumns = withPointers([a, b, c0]) { p in
      gemm(
        m: m, n: narrow, k: k, a: p[0], aRowStride: k, aColStride: 1, b: p[1], ldb: n, c: p[2], ldc: n,
        accumulate: true)
    }[2]
    for row in 0..<m {
      XCTAssertEqual(
        firstColumns[(row * n)..<(row * n + narrow)], accumulated[(row * n)..<(row * n + narrow)],
        "the first \(narrow) columns alone, row \(row), m = \(m), n = \(n)")
    }
  }

  /// A product 16 wide and 16 deep (`gemmRegisterRows` with AVX-512): against the naive
  /// product in every stride mode, and bit for bit against a chain of FMAs in k order and
  /// against the same columns computed in the tiles (inside a 17-column call).
  func testSixteenWideSixteenDeepProductsKeepTheTilesBits() {
    let (n, k) = (16, 16)
    for m in [1, 5, 8, 13, 37] {
      assertGemmMatchesNaive(m: m, n: n, k: k)
      let a = randomFloats(m * k, seed: 11)
      let b = randomFloats(k * n, seed: 12)
      let c0 = randomFloats(m * n, seed: 13)
      for accumulate in [false, true] {
        let product = withPointers([a, b, c0]) { p in
          gemm(
            m: m, n: n, k: k, a: p[0], aRowStride: k, aColStride: 1, b: p[1], ldb: n, c: p[2], ldc: n,
            accumulate: accumulate)
        }[2]
        var chains = accumulate ? c0 : [Float](repeating: 0, count: m * n)
        for i in 0..<m {
          for j in 0..<n {
            for p in 0..<k { chains[i * n + j].addProduct(a[i * k + p], b[p * n + j]) }
          }
        }
        XCTAssertEqual(product, chains, "FMA chains in k order, m = \(m), accumulate: \(accumulate)")
        let wider = 17
        let b17 = (0..<(k * wider)).map { $0 % wider < n ? b[$0 / wider * n + $0 % wider] : 1 }
        let c17 = (0..<(m * wider)).map { $0 % wider < n ? c0[$0 / wider * n + $0 % wider] : 0 }
        let tiles = withPointers([a, b17, c17]) { p in
          gemm(
            m: m, n: wider, k: k, a: p[0], aRowStride: k, aColStride: 1, b: p[1], ldb: wider, c: p[2], ldc: wider,
            accumulate: accumulate)
        }[2]
        let tileColumns = (0..<(m * n)).map { tiles[$0 / n * wider + $0 % n] }
        XCTAssertEqual(product, tileColumns, "the tiles' bits, m = \(m), accumulate: \(accumulate)")
      }
    }
  }
}
