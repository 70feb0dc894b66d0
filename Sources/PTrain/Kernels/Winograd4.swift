// Winograd F(4×4, 3×3) (Lavin & Gray, 2015), for 3×3 convolutions over larger maps: the
// transforms of one tile; WinogradTiles.swift runs the passes.
//
// As F(2×2, 3×3) in Winograd.swift, but each 4×4 output tile comes from a 6×6 input patch
// through 36 points: 36 multiplies per 16 outputs instead of 16 per 4, 1.78× fewer GEMM
// FLOP on a large map, at the price of costlier transforms and a little more rounding
// (the points are 0, ±1, ±2 and ∞). With
//
//   Bᵀ = [4 0 −5 0 1 0; 0 −4 −4 1 1 0; 0 4 −4 −1 1 0; 0 −2 −1 2 1 0; 0 2 −1 −2 1 0; 0 4 0 −5 0 1]
//   G  = [1/4 0 0; −1/6 −1/6 −1/6; −1/6 1/6 −1/6; 1/24 1/12 1/6; 1/24 −1/12 1/6; 0 0 1]
//   Aᵀ = [1 1 1 1 1 0; 0 1 −1 2 −2 0; 0 1 1 4 4 0; 0 1 −1 8 −8 1]
//
// the forward pass is `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` and the weight gradient
// `dW = Gᵀ [Σ_tiles (A e Aᵀ) ⊙ (Bᵀ d B)] G`.

/// `Bᵀ x` for the 6 values of one column (or row) of a 6×6 input tile.
@inline(__always)
func winograd4B(
  _ d0: WinogradLane, _ d1: WinogradLane, _ d2: WinogradLane, _ d3: WinogradLane, _ d4: WinogradLane,
  _ d5: WinogradLane
) -> (WinogradLane, WinogradLane, WinogradLane, WinogradLane, WinogradLane, WinogradLane) {
  let four = WinogradLane(repeating: 4)
  let five = WinogradLane(repeating: 5)
  let two = WinogradLane(repeating: 2)
  let a = d4 - d2 * four  // d4 − 4 d2
  let b = d3 - d1 * four  // d3 − 4 d1
  let c = d4 - d2  // d4 − d2
  let e = (d3 - d1) * two  // 2 (d3 − d1)
  return (
    d0 * four - d2 * five + d4, a + b, a - b, c + e, c - e, d1 * four - d3 * five + d5
  )
}

/// `A x` for the 4 values of one column (or row) of a 4×4 output-gradient tile: 6 values.
@inline(__always)
func winograd4A(_ y0: WinogradLane, _ y1: WinogradLane, _ y2: WinogradLane, _ y3: WinogradLane)
  -> (WinogradLane, WinogradLane, WinogradLane, WinogradLane, WinogradLane, WinogradLane)
{
  let two = WinogradLane(repeating: 2)
  let four = WinogradLane(repeating: 4)
  let even = y0 + y2
  let odd = y1 + y3
  let evenTwo = y0 + y2 * four
  let oddTwo = (y1 + y3 * four) * two
  return (y0, even + odd, even - odd, evenTwo + oddTwo, evenTwo - oddTwo, y3)
}

/// `Aᵀ x` for the 6 values of one column (or row) of a point tile: 4 outputs.
@inline(__always)
func winograd4AT(
  _ m0: WinogradLane, _ m1: WinogradLane, _ m2: WinogradLane, _ m3: WinogradLane, _ m4: WinogradLane,
  _ m5: WinogradLane
) -> (WinogradLane, WinogradLane, WinogradLane, WinogradLane) {
  let two = WinogradLane(repeating: 2)
  let four = WinogradLane(repeating: 4)
  let eight = WinogradLane(repeating: 8)
  let s12 = m1 + m2
  let d12 = m1 - m2
  let s34 = m3 + m4
  let d34 = m3 - m4
  return (m0 + s12 + s34, d12 + d34 * two, s12 + s34 * four, d12 + d34 * eight + m5)
}

/// `Gᵀ x` for the 6 values of one column (or row) of a point tile: 3 outputs.
@inline(__always)
func winograd4GT(
  _ p0: WinogradLane, _ p1: WinogradLane, _ p2: WinogradLane, _ p3: WinogradLane, _ p4: WinogradLane,
  _ p5: WinogradLane
) -> (WinogradLane, WinogradLane, WinogradLane) {
  let sixth = WinogradLane(repeating: 1.0 / 6)
  let twelfth = WinogradLane(repeating: 1.0 / 12)
  let twentyFourth = WinogradLane(repeating: 1.0 / 24)
  let quarter = WinogradLane(repeating: 0.25)
  let s12 = p1 + p2
  let d12 = p2 - p1
  let s34 = p3 + p4
  let d34 = p3 - p4
  return (
    p0 * quarter - s12 * sixth + s34 * twentyFourth, d12 * sixth + d34 * twelfth, (s34 - s12) * sixth + p5
  )
}

/// `G x` for the 3 values of one column (or row) of a filter: 6 values.
@inline(__always)
func winograd4G(_ g0: WinogradLane, _ g1: WinogradLane, _ g2: WinogradLane)
  -> (WinogradLane, WinogradLane, WinogradLane, WinogradLane, WinogradLane, WinogradLane)
{
  let sixth = WinogradLane(repeating: 1.0 / 6)
  let twelfth = WinogradLane(repeating: 1.0 / 12)
  let twentyFourth = WinogradLane(repeating: 1.0 / 24)
  let quarter = WinogradLane(repeating: 0.25)
  let outer = g0 + g2
  let big = g0 * twentyFourth + g2 * sixth
  return (
    g0 * quarter, -(outer + g1) * sixth, (g1 - outer) * sixth, big + g1 * twelfth, big - g1 * twelfth, g2
  )
}

/// Six vectors: one column or row of a transform in flight.
typealias Six = (WinogradLane, WinogradLane, WinogradLane, WinogradLane, WinogradLane, WinogradLane)

/// Stores `lanes` at `base`, `base + stride`, …, `base + 5 · stride` (bytes).
@inline(__always) func storeSix(_ lanes: Six, at base: UnsafeMutableRawPointer, stride: Int) {
  base.storeBytes(of: lanes.0, as: WinogradLane.self)
  (base + stride).storeBytes(of: lanes.1, as: WinogradLane.self)
  (base + 2 * stride).storeBytes(of: lanes.2, as: WinogradLane.self)
  (base + 3 * stride).storeBytes(of: lanes.3, as: WinogradLane.self)
  (base + 4 * stride).storeBytes(of: lanes.4, as: WinogradLane.self)
  (base + 5 * stride).storeBytes(of: lanes.5, as: WinogradLane.self)
}

/// Winograd F(4×4, 3×3): 4×4 output tiles from 6×6 input patches, 36 points.
@_spi(Kernels) public enum WinogradF4: WinogradScheme {
  @inline(__always) public static var outputTile: Int { 4 }

  /// Two passes through a 36-vector scratch (on the stack, so in L1): `Bᵀ` along each row
  /// of the patch, then down each column. Holding three columns of both passes in
  /// registers instead (18 vectors, 36 AVX2 registers) spilled to the stack anyway, and
  /// measured 1.34 times slower on Zen 3 (a 32×32×16 image's 64 tiles, in L1).
  @inline(__always) public static func transformInputTile(
    _ corner: UnsafeRawPointer, rowBytes: Int, pixelBytes: Int, into target: UnsafeMutableRawPointer, pointBytes: Int,
    scratch rows: UnsafeMutablePointer<WinogradLane>
  ) {
    for r in 0..<6 {
      let base = corner + r * rowBytes
      @inline(__always) func load(_ x: Int) -> WinogradLane {
        (base + x * pixelBytes).loadUnaligned(as: WinogradLane.self)
      }
      storeSix(
        winograd4B(load(0), load(1), load(2), load(3), load(4), load(5)),
        at: UnsafeMutableRawPointer(rows + 6 * r), stride: MemoryLayout<WinogradLane>.stride)
    }
    for q in 0..<6 {
      storeSix(
        winograd4B(rows[q], rows[6 + q], rows[12 + q], rows[18 + q], rows[24 + q], rows[30 + q]),
        at: target + q * pointBytes, stride: 6 * pointBytes)
    }
  }

  /// Two passes through a 24-vector scratch: Aᵀ along each row of points, then down each
  /// column.
  @inline(__always) public static func transformOutputTile(
    _ source: UnsafeRawPointer, pointBytes: Int, columns: Int, scratch rows: UnsafeMutablePointer<WinogradLane>,
    put: (_ value: WinogradLane, _ dy: Int, _ dx: Int) -> Void
  ) {
    // Aᵀ over the six points of each row p.
    for p in 0..<6 {
      let base = source + (p * 6) * pointBytes
      @inline(__always) func load(_ q: Int) -> WinogradLane {
        (base + q * pointBytes).loadUnaligned(as: WinogradLane.self)
      }
      let row = winograd4AT(load(0), load(1), load(2), load(3), load(4), load(5))
      (rows + 4 * p).initialize(to: row.0)
      (rows + 4 * p + 1).initialize(to: row.1)
      (rows + 4 * p + 2).initialize(to: row.2)
      (rows + 4 * p + 3).initialize(to: row.3)
    }
    // · A down each column dx, to output rows dy.
    for dx in 0..<columns {
      let column = winograd4AT(rows[dx], rows[4 + dx], rows[8 + dx], rows[12 + dx], rows[16 + dx], rows[20 + dx])
      put(column.0, 0, dx)
      put(column.1, 1, dx)
      put(column.2, 2, dx)
      put(column.3, 3, dx)
    }
  }

  /// Two passes through a 24-vector scratch, as `transformInputTile`: A along each row of
  /// the tile, then down each column.
  @inline(__always) public static func transformGradientTile(
    _ load: (_ dy: Int, _ dx: Int) -> WinogradLane, into target: UnsafeMutableRawPointer, pointBytes: Int,
    scratch rows: UnsafeMutablePointer<WinogradLane>
  ) {
    for dy in 0..<4 {
      storeSix(
        winograd4A(load(dy, 0), load(dy, 1), load(dy, 2), load(dy, 3)), at: UnsafeMutableRawPointer(rows + 6 * dy),
        stride: MemoryLayout<WinogradLane>.stride)
    }
    for q in 0..<6 {
      storeSix(
        winograd4A(rows[q], rows[6 + q], rows[12 + q], rows[18 + q]), at: target + q * pointBytes,
        stride: 6 * pointBytes)
    }
  }

  @inline(__always) public static func filterColumn(
    _ g0: WinogradLane, _ g1: WinogradLane, _ g2: WinogradLane, _ put: (_ value: WinogradLane, _ i: Int) -> Void
  ) {
    let values = winograd4G(g0, g1, g2)
    put(values.0, 0)
    put(values.1, 1)
    put(values.2, 2)
    put(values.3, 3)
    put(values.4, 4)
    put(values.5, 5)
  }

  @inline(__always) public static func weightGradientColumn(_ x: (_ i: Int) -> WinogradLane) -> (
    WinogradLane, WinogradLane, WinogradLane
  ) {
    winograd4GT(x(0), x(1), x(2), x(3), x(4), x(5))
  }
}
