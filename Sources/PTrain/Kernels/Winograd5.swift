// Winograd F(5×5, 3×3), for 3×3 convolutions on maps that 5×5 tiles cover with less
// padding than 4×4 ones (a 14×14 map: 9 tiles of 49 points, against F(4×4, 3×3)'s 16 of
// 36, 23% fewer GEMM FLOP): the transforms of one tile; WinogradTiles.swift runs the passes.
//
// Each 5×5 output tile comes from a 7×7 input patch through 49 points, chosen at 0, ±1,
// ±2, ½ and ∞ (Lavin & Gray's construction; the matrices are exact):
//
//   Bᵀ = [−2 4 5/2 −5 −1/2 1 0; 0 2 −2 −9/2 1/2 1 0; 0 −2 6 −7/2 −3/2 1 0;
//         0 1 −3/2 −2 3/2 1 0; 0 −1 5/2 0 −5/2 1 0; 0 4 0 −5 0 1 0; 0 −2 4 5/2 −5 −1/2 1]
//   G  = [−1/2 0 0; −1/3 −1/3 −1/3; 1/9 −1/9 1/9; 1/36 1/18 1/9; −1/60 1/30 −1/15;
//         32/45 16/45 8/45; 0 0 1]
//   Aᵀ = [1 1 1 1 1 1 0; 0 1 −1 2 −2 1/2 0; 0 1 1 4 4 1/4 0; 0 1 −1 8 −8 1/8 0;
//         0 1 1 16 16 1/16 1]
//
// The larger points round a little more than F(4×4, 3×3)'s (the kernel tests bound it).

/// `Bᵀ x` for the 7 values of one column (or row) of a 7×7 input tile. Products are
/// fused into the adds that take them (one rounding each), here and in the other
/// F(5×5, 3×3) transforms.
@inline(__always)
func winograd5B(
  _ d0: WinogradLane, _ d1: WinogradLane, _ d2: WinogradLane, _ d3: WinogradLane, _ d4: WinogradLane,
  _ d5: WinogradLane, _ d6: WinogradLane
) -> Seven {
  let half = WinogradLane(repeating: 0.5)
  let two = WinogradLane(repeating: 2)
  let four = WinogradLane(repeating: 4)
  let five = WinogradLane(repeating: 5)
  let fiveHalves = WinogradLane(repeating: 2.5)
  let r5 = d5.addingProduct(d1, four).addingProduct(d3, -five)  // 4 d1 − 5 d3 + d5
  let tail = d5.addingProduct(d4, -half)  // d5 − d4 / 2
  let s12 = tail.addingProduct(d2, two).addingProduct(d3, -four)  // (r1 + r2) / 2
  let d12 = d4.addingProduct(d1, two).addingProduct(d2, -four).addingProduct(d3, -half)  // (r1 − r2) / 2
  let s34 = tail.addingProduct(d2, half) - d3  // (r3 + r4) / 2
  let d34 = (d1 - d3).addingProduct(d4 - d2, two)  // (r3 − r4) / 2
  return (
    r5.addingProduct(d0, -two).addingProduct(d2, fiveHalves).addingProduct(d4, -half), s12 + d12, s12 - d12,
    s34 + d34, s34 - d34, r5,
    d6.addingProduct(d1, -two).addingProduct(d2, four).addingProduct(d3, fiveHalves).addingProduct(d4, -five)
      .addingProduct(d5, -half)
  )
}

/// `A x` for the 5 values of one column (or row) of a 5×5 output-gradient tile: 7 values.
@inline(__always)
func winograd5A(_ y0: WinogradLane, _ y1: WinogradLane, _ y2: WinogradLane, _ y3: WinogradLane, _ y4: WinogradLane)
  -> Seven
{
  let half = WinogradLane(repeating: 0.5)
  let two = WinogradLane(repeating: 2)
  let four = WinogradLane(repeating: 4)
  let sixteen = WinogradLane(repeating: 16)
  let even = y0 + y2 + y4
  let odd = y1 + y3
  let evenTwo = y0.addingProduct(y2, four).addingProduct(y4, sixteen)
  let oddTwo = y1.addingProduct(y3, four) * two
  // At ½: y0 + y1/2 + y2/4 + y3/8 + y4/16, by Horner.
  let atHalf = y0.addingProduct(y1.addingProduct(y2.addingProduct(y3.addingProduct(y4, half), half), half), half)
  return (y0, even + odd, even - odd, evenTwo + oddTwo, evenTwo - oddTwo, atHalf, y4)
}

/// `Aᵀ x` for the 7 values of one column (or row) of a point tile: 5 outputs.
@inline(__always)
func winograd5AT(
  _ m0: WinogradLane, _ m1: WinogradLane, _ m2: WinogradLane, _ m3: WinogradLane, _ m4: WinogradLane,
  _ m5: WinogradLane, _ m6: WinogradLane
) -> (WinogradLane, WinogradLane, WinogradLane, WinogradLane, WinogradLane) {
  let s12 = m1 + m2
  let d12 = m1 - m2
  let s34 = m3 + m4
  let d34 = m3 - m4
  return (
    m0 + s12 + s34 + m5,
    d12.addingProduct(d34, WinogradLane(repeating: 2)).addingProduct(m5, WinogradLane(repeating: 0.5)),
    s12.addingProduct(s34, WinogradLane(repeating: 4)).addingProduct(m5, WinogradLane(repeating: 0.25)),
    d12.addingProduct(d34, WinogradLane(repeating: 8)).addingProduct(m5, WinogradLane(repeating: 0.125)),
    (s12 + m6).addingProduct(s34, WinogradLane(repeating: 16)).addingProduct(m5, WinogradLane(repeating: 0.0625))
  )
}

/// `G x` for the 3 values of one column (or row) of a filter: 7 values.
@inline(__always)
func winograd5G(_ g0: WinogradLane, _ g1: WinogradLane, _ g2: WinogradLane) -> Seven {
  let sum = g0 + g2
  let outer4 = g0.addingProduct(g2, WinogradLane(repeating: 4))
  let twoG1 = g1 * WinogradLane(repeating: 2)
  return (
    g0 * WinogradLane(repeating: -0.5), (sum + g1) * WinogradLane(repeating: -1.0 / 3),
    (sum - g1) * WinogradLane(repeating: 1.0 / 9), (outer4 + twoG1) * WinogradLane(repeating: 1.0 / 36),
    (outer4 - twoG1) * WinogradLane(repeating: -1.0 / 60),
    (twoG1 + g2).addingProduct(g0, WinogradLane(repeating: 4)) * WinogradLane(repeating: 8.0 / 45), g2
  )
}

/// `Gᵀ x` for the 7 values of one column (or row) of a point tile: 3 outputs.
@inline(__always)
func winograd5GT(
  _ p0: WinogradLane, _ p1: WinogradLane, _ p2: WinogradLane, _ p3: WinogradLane, _ p4: WinogradLane,
  _ p5: WinogradLane, _ p6: WinogradLane
) -> (WinogradLane, WinogradLane, WinogradLane) {
  // The rows of G, scaled: p1 · (−1/3), p2 · 1/9, p3 · 1/36, p4 · (−1/60), p5 · 8/45.
  let a1 = p1 * WinogradLane(repeating: -1.0 / 3)
  let a2 = p2 * WinogradLane(repeating: 1.0 / 9)
  let a3 = p3 * WinogradLane(repeating: 1.0 / 36)
  let a4 = p4 * WinogradLane(repeating: -1.0 / 60)
  let a5 = p5 * WinogradLane(repeating: 8.0 / 45)
  let two = WinogradLane(repeating: 2)
  let four = WinogradLane(repeating: 4)
  return (
    (a1 + a2 + a3 + a4).addingProduct(p0, WinogradLane(repeating: -0.5)).addingProduct(a5, four),
    (a1 - a2).addingProduct(a3 - a4 + a5, two), (a1 + a2 + a5 + p6).addingProduct(a3 + a4, four)
  )
}

/// Seven vectors: one column or row of an F(5×5, 3×3) transform in flight.
typealias Seven = (WinogradLane, WinogradLane, WinogradLane, WinogradLane, WinogradLane, WinogradLane, WinogradLane)

/// Stores `lanes` at `base`, `base + stride`, …, `base + 6 · stride` (bytes).
@inline(__always) func storeSeven(_ lanes: Seven, at base: UnsafeMutableRawPointer, stride: Int) {
  base.storeBytes(of: lanes.0, as: WinogradLane.self)
  (base + stride).storeBytes(of: lanes.1, as: WinogradLane.self)
  (base + 2 * stride).storeBytes(of: lanes.2, as: WinogradLane.self)
  (base + 3 * stride).storeBytes(of: lanes.3, as: WinogradLane.self)
  (base + 4 * stride).storeBytes(of: lanes.4, as: WinogradLane.self)
  (base + 5 * stride).storeBytes(of: lanes.5, as: WinogradLane.self)
  (base + 6 * stride).storeBytes(of: lanes.6, as: WinogradLane.self)
}

/// Winograd F(5×5, 3×3): 5×5 output tiles from 7×7 input patches, 49 points.
@_spi(Kernels) public enum WinogradF5: WinogradScheme {
  @inline(__always) public static var outputTile: Int { 5 }

  /// Two passes through a 49-vector scratch: Bᵀ along each row of the patch, then down
  /// each column. (Three groups of columns held in registers in turn, each recomputing
  /// the rows' terms, kept 21 vectors live: 42 of AVX2's 16 ymm registers, spilled.)
  @inline(__always) public static func transformInputTile(
    _ corner: UnsafeRawPointer, rowBytes: Int, pixelBytes: Int, into target: UnsafeMutableRawPointer, pointBytes: Int,
    scratch rows: UnsafeMutablePointer<WinogradLane>
  ) {
    for r in 0..<7 {
      let base = corner + r * rowBytes
      @inline(__always) func load(_ x: Int) -> WinogradLane {
        (base + x * pixelBytes).loadUnaligned(as: WinogradLane.self)
      }
      storeSeven(
        winograd5B(load(0), load(1), load(2), load(3), load(4), load(5), load(6)),
        at: UnsafeMutableRawPointer(rows + 7 * r),
        stride: MemoryLayout<WinogradLane>.stride)
    }
    for q in 0..<7 {
      storeSeven(
        winograd5B(rows[q], rows[7 + q], rows[14 + q], rows[21 + q], rows[28 + q], rows[35 + q], rows[42 + q]),
        at: target + q * pointBytes, stride: 7 * pointBytes)
    }
  }

  /// Two passes through a 35-vector scratch: Aᵀ along each row of points, then down each
  /// column.
  @inline(__always) public static func transformOutputTile(
    _ source: UnsafeRawPointer, pointBytes: Int, columns: Int, scratch rows: UnsafeMutablePointer<WinogradLane>,
    put: (_ value: WinogradLane, _ dy: Int, _ dx: Int) -> Void
  ) {
    for p in 0..<7 {
      let base = source + (p * 7) * pointBytes
      @inline(__always) func load(_ q: Int) -> WinogradLane {
        (base + q * pointBytes).loadUnaligned(as: WinogradLane.self)
      }
      let row = winograd5AT(load(0), load(1), load(2), load(3), load(4), load(5), load(6))
      (rows + 5 * p).initialize(to: row.0)
      (rows + 5 * p + 1).initialize(to: row.1)
      (rows + 5 * p + 2).initialize(to: row.2)
      (rows + 5 * p + 3).initialize(to: row.3)
      (rows + 5 * p + 4).initialize(to: row.4)
    }
    for dx in 0..<columns {
      let column = winograd5AT(
        rows[dx], rows[5 + dx], rows[10 + dx], rows[15 + dx], rows[20 + dx], rows[25 + dx], rows[30 + dx])
      put(column.0, 0, dx)
      put(column.1, 1, dx)
      put(column.2, 2, dx)
      put(column.3, 3, dx)
      put(column.4, 4, dx)
    }
  }

  /// Two passes through a 35-vector scratch: A along each row of the tile, then down each
  /// column.
  @inline(__always) public static func transformGradientTile(
    _ load: (_ dy: Int, _ dx: Int) -> WinogradLane, into target: UnsafeMutableRawPointer, pointBytes: Int,
    scratch rows: UnsafeMutablePointer<WinogradLane>
  ) {
    for dy in 0..<5 {
      storeSeven(
        winograd5A(load(dy, 0), load(dy, 1), load(dy, 2), load(dy, 3), load(dy, 4)),
        at: UnsafeMutableRawPointer(rows + 7 * dy),
        stride: MemoryLayout<WinogradLane>.stride)
    }
    for q in 0..<7 {
      storeSeven(
        winograd5A(rows[q], rows[7 + q], rows[14 + q], rows[21 + q], rows[28 + q]), at: target + q * pointBytes,
        stride: 7 * pointBytes)
    }
  }

  @inline(__always) public static func filterColumn(
    _ g0: WinogradLane, _ g1: WinogradLane, _ g2: WinogradLane, _ put: (_ value: WinogradLane, _ i: Int) -> Void
  ) {
    let values = winograd5G(g0, g1, g2)
    put(values.0, 0)
    put(values.1, 1)
    put(values.2, 2)
    put(values.3, 3)
    put(values.4, 4)
    put(values.5, 5)
    put(values.6, 6)
  }

  @inline(__always) public static func weightGradientColumn(_ x: (_ i: Int) -> WinogradLane) -> (
    WinogradLane, WinogradLane, WinogradLane
  ) {
    winograd5GT(x(0), x(1), x(2), x(3), x(4), x(5), x(6))
  }
}
