// Winograd F(4×4, 3×3) (Lavin & Gray, 2015), for 3×3 convolutions over larger maps.
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
// the forward pass is `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`, the weight gradient F(3×3, 4×4),
// `dW = Gᵀ [Σ_tiles (A e Aᵀ) ⊙ (Bᵀ d B)] G`, reusing the forward pass's input tiles, and
// the input gradient the forward pass over the padded output gradient with the filters
// turned by 180° (which, unlike F(2×2, 3×3)'s, are not a permutation of the forward
// points, so they are transformed from the turned weights). Data layouts are those of
// Winograd.swift with 36 points; the transforms run on 16 channels at a time.

/// The points of F(4×4, 3×3): a 6×6 tile.
package let winograd4Points = 36

/// Floats of the transformed filters of `shape` for F(4×4, 3×3) (and of their weight
/// products): 36 points of in × out, each at `winogradPointStride`.
public func winograd4WeightCount(_ shape: Conv3x3Shape) -> Int {
  winograd4Points * winogradPointStride(shape.inChannels * shape.outChannels, points: winograd4Points)
}

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

/// Transforms every 6×6 input tile: `u[point][tile][c] = (Bᵀ d B)[point]`, after copying
/// the input into the interior of `padded` (whose border must be zero), as
/// `winogradTransformInput` does for F(2×2, 3×3). Each tile goes through two passes (rows,
/// then columns) for three columns at a time, so that the 18 vectors between them stay in
/// registers; each row is loaded twice, from L1. Several images are laid out as
/// `winogradTransformInput` lays them out. Cost: O(images · tiles · 36 · channels) adds.
package func winograd4TransformInput(
  _ input: UnsafePointer<Float>, images: Int = 1, tiling t: WinogradTiling, padded: UnsafeMutablePointer<Float>,
  into u: UnsafeMutablePointer<Float>, normalizing: FoldedBatchNorm? = nil
) {
  let channels = t.channels
  let rowBytes = t.paddedWidth * channels * 4
  let pixelBytes = channels * 4
  let pointBytes = winogradPointStride(images * t.tiles * channels, points: winograd4Points) * 4
  let source = UnsafeRawPointer(padded)
  for image in 0..<images {
    t.fillPadded(input + image * t.inputCount, padded, normalizing: normalizing)
    let imageTiles = u + image * t.tiles * channels
    for ty in 0..<t.tilesY {
      for tx in 0..<t.tilesX {
        let corner = source + (4 * ty) * rowBytes + 4 * tx * pixelBytes
        let target = UnsafeMutableRawPointer(imageTiles + (ty * t.tilesX + tx) * channels)
        for c in stride(from: 0, to: channels * 4, by: 64) {
          /// `(d B)[r][q]` for the three columns `q` from `first` on, one row `r` at a time.
          @inline(__always) func rowsTimesB(_ r: Int, from first: Int) -> (WinogradLane, WinogradLane, WinogradLane) {
            let base = corner + r * rowBytes + c
            @inline(__always) func load(_ x: Int) -> WinogradLane {
              (base + x * pixelBytes).loadUnaligned(as: WinogradLane.self)
            }
            let row = winograd4B(load(0), load(1), load(2), load(3), load(4), load(5))
            return first == 0 ? (row.0, row.1, row.2) : (row.3, row.4, row.5)
          }
          // Half the columns at a time, so that d B stays in registers: each row's loads
          // twice (from L1) instead of a scratch tile stored and loaded.
          for first in [0, 3] {
            let (r0, r1, r2, r3, r4, r5) = (
              rowsTimesB(0, from: first), rowsTimesB(1, from: first), rowsTimesB(2, from: first),
              rowsTimesB(3, from: first), rowsTimesB(4, from: first), rowsTimesB(5, from: first)
            )
            // Bᵀ ·, one column at a time, to points p·6 + q.
            storeSix(
              winograd4B(r0.0, r1.0, r2.0, r3.0, r4.0, r5.0), at: target + c + first * pointBytes,
              stride: 6 * pointBytes)
            storeSix(
              winograd4B(r0.1, r1.1, r2.1, r3.1, r4.1, r5.1), at: target + c + (first + 1) * pointBytes,
              stride: 6 * pointBytes)
            storeSix(
              winograd4B(r0.2, r1.2, r2.2, r3.2, r4.2, r5.2), at: target + c + (first + 2) * pointBytes,
              stride: 6 * pointBytes)
          }
        }
      }
    }
  }
}

/// `G g Gᵀ` of 16 filters whose taps `tap(ky, kx)` gives, handed to `store` a row of six
/// points (p·6 + q for q in 0..<6) at a time.
@inline(__always) func winograd4FilterTransform(
  _ tap: (_ ky: Int, _ kx: Int) -> WinogradLane, _ store: (Six, Int) -> Void
) {
  let c0 = winograd4G(tap(0, 0), tap(1, 0), tap(2, 0))
  let c1 = winograd4G(tap(0, 1), tap(1, 1), tap(2, 1))
  let c2 = winograd4G(tap(0, 2), tap(1, 2), tap(2, 2))
  store(winograd4G(c0.0, c1.0, c2.0), 0)
  store(winograd4G(c0.1, c1.1, c2.1), 1)
  store(winograd4G(c0.2, c1.2, c2.2), 2)
  store(winograd4G(c0.3, c1.3, c2.3), 3)
  store(winograd4G(c0.4, c1.4, c2.4), 4)
  store(winograd4G(c0.5, c1.5, c2.5), 5)
}

/// Transforms HWIO 3×3 filters for F(4×4, 3×3), for `inputChannels` (all by default):
/// `v[point][ci][co] = (G g Gᵀ)[point]`, and, when `flipped` is given, the filters turned
/// by 180° with in and out swapped, `flipped[point][co][ci]`, for the input gradient. The
/// forward filters run 16 output channels at a time and the flipped ones 16 input channels
/// at a time (`winograd4TransformFlippedWeights`, through `turnedTaps`, 9 · in · out
/// Floats, or a temporary buffer without it), so both store whole vectors.
/// Cost: O(36 · in · out) adds; run once per parameter change.
public func winograd4TransformWeights(
  _ weights: UnsafePointer<Float>, shape s: Conv3x3Shape, inputChannels: Range<Int>? = nil,
  into v: UnsafeMutablePointer<Float>, flipped: UnsafeMutablePointer<Float>? = nil,
  turnedTaps: UnsafeMutablePointer<Float>? = nil
) {
  let (cin, cout) = (s.inChannels, s.outChannels)
  let pairs = cin * cout
  let pointStride = winogradPointStride(pairs, points: winograd4Points)
  precondition(cout % 16 == 0, "Winograd filters: outChannels = \(cout) is not a multiple of 16")
  let channels = inputChannels ?? 0..<cin
  let source = UnsafeRawPointer(weights)
  let target = UnsafeMutableRawPointer(v)
  for ci in channels {
    for co in stride(from: 0, to: cout, by: 16) {
      winograd4FilterTransform({ ky, kx in
        source.loadUnaligned(fromByteOffset: (((ky * 3 + kx) * cin + ci) * cout + co) * 4, as: WinogradLane.self)
      }) { row, p in
        storeSix(row, at: target + ((p * 6) * pointStride + ci * cout + co) * 4, stride: pointStride * 4)
      }
    }
  }
  guard let flipped else { return }
  guard let turnedTaps else {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 9 * pairs) { scratch in
      winograd4TransformFlippedWeights(
        weights, shape: s, inputChannels: channels, into: flipped, turnedTaps: scratch.baseAddress!)
    }
    return
  }
  winograd4TransformFlippedWeights(weights, shape: s, inputChannels: channels, into: flipped, turnedTaps: turnedTaps)
}

/// The flipped filters of `winograd4TransformWeights` for `inputChannels`:
/// `flipped[point][co][ci]`, 16 input channels of one output channel at a time, each
/// vector loaded whole from the taps first transposed into `turnedTaps` as [tap][co][ci]
/// (a gather with a stride of `out` straight from HWIO measured several times slower);
/// past the range's end, lanes are zero and not stored. Cost: O(36 · in · out) adds.
func winograd4TransformFlippedWeights(
  _ weights: UnsafePointer<Float>, shape s: Conv3x3Shape, inputChannels channels: Range<Int>,
  into flipped: UnsafeMutablePointer<Float>, turnedTaps: UnsafeMutablePointer<Float>
) {
  let (cin, cout) = (s.inChannels, s.outChannels)
  let pointStride = winogradPointStride(cin * cout, points: winograd4Points)
  for tap in 0..<9 {
    transposeMatrix(
      weights + tap * cin * cout, rows: cin, columns: cout, rowRange: channels, into: turnedTaps + tap * cin * cout)
  }
  for co in 0..<cout {
    for first in stride(from: channels.lowerBound, to: channels.upperBound, by: 16) {
      let lanes = min(16, channels.upperBound - first)
      winograd4FilterTransform({ ky, kx in
        let taps = turnedTaps + (((2 - ky) * 3 + (2 - kx)) * cout + co) * cin + first
        if lanes == 16 { return UnsafeRawPointer(taps).loadUnaligned(as: WinogradLane.self) }
        var gathered = WinogradLane()
        for lane in 0..<lanes { gathered[lane] = taps[lane] }
        return gathered
      }) { row, p in
        let base = flipped + (p * 6) * pointStride + co * cin + first
        guard lanes < 16 else {
          storeSix(row, at: UnsafeMutableRawPointer(base), stride: pointStride * 4)
          return
        }
        @inline(__always) func put(_ value: WinogradLane, _ q: Int) {
          for lane in 0..<lanes { base[q * pointStride + lane] = value[lane] }
        }
        put(row.0, 0)
        put(row.1, 1)
        put(row.2, 2)
        put(row.3, 3)
        put(row.4, 4)
        put(row.5, 5)
      }
    }
  }
}

/// Transforms the point products back into 4×4 output tiles (`Aᵀ M A`) and writes the
/// output (`t.outHeight` × `t.outWidth` × `channels`, NHWC), plus `bias` when given,
/// through `relu` when asked. Tile outputs past the edge are dropped. Two passes through
/// a 24-vector scratch. Several images are read and written as `winogradTransformOutput`
/// does. `rows` works on each row of tiles as soon as it is written, while in cache (see
/// `WinogradOutputRows`). Cost: O(images · tiles · 36 · channels) adds, plus `rows`'.
package func winograd4TransformOutput<Rows: WinogradOutputRows>(
  _ m: UnsafePointer<Float>, images: Int = 1, tiling t: WinogradTiling, channels: Int, bias: UnsafePointer<Float>?,
  relu applyReLU: Bool = false, into output: UnsafeMutablePointer<Float>, rows hook: Rows
) {
  let pointBytes = winogradPointStride(images * t.tiles * channels, points: winograd4Points) * 4
  withUnsafeTemporaryAllocation(of: WinogradLane.self, capacity: 24) { scratch in
    let rows = scratch.baseAddress!
    for image in 0..<images {
      let imageOutput = output + image * t.outHeight * t.outWidth * channels
      let target = UnsafeMutableRawPointer(imageOutput)
      let imageProducts = m + image * t.tiles * channels
      /// Transforms the image's tiles, handing `rowDone` the output rows of each row of tiles.
      @inline(__always) func transformImage(_ rowDone: (Range<Int>) -> Void) {
        for ty in 0..<t.tilesY {
          for tx in 0..<t.tilesX {
            let source = UnsafeRawPointer(imageProducts + (ty * t.tilesX + tx) * channels)
            let outRows = min(4, t.outHeight - 4 * ty)
            let outColumns = min(4, t.outWidth - 4 * tx)
            for c in stride(from: 0, to: channels, by: 16) {
              // Aᵀ over the six points of each row p.
              for p in 0..<6 {
                let base = source + (p * 6) * pointBytes + c * 4
                @inline(__always) func load(_ q: Int) -> WinogradLane {
                  (base + q * pointBytes).loadUnaligned(as: WinogradLane.self)
                }
                let row = winograd4AT(load(0), load(1), load(2), load(3), load(4), load(5))
                (rows + 4 * p).initialize(to: row.0)
                (rows + 4 * p + 1).initialize(to: row.1)
                (rows + 4 * p + 2).initialize(to: row.2)
                (rows + 4 * p + 3).initialize(to: row.3)
              }
              let b =
                bias.map { UnsafeRawPointer($0).loadUnaligned(fromByteOffset: c * 4, as: WinogradLane.self) }
                ?? WinogradLane()
              // · A down each column dx, to output rows dy.
              for dx in 0..<outColumns {
                let column = winograd4AT(
                  rows[dx], rows[4 + dx], rows[8 + dx], rows[12 + dx], rows[16 + dx], rows[20 + dx])
                let values = (column.0, column.1, column.2, column.3)
                @inline(__always) func put(_ value: WinogradLane, _ dy: Int) {
                  guard dy < outRows else { return }
                  let sum = value + b
                  let pixel = (4 * ty + dy) * t.outWidth + 4 * tx + dx
                  target.storeBytes(
                    of: applyReLU ? relu(sum) : sum, toByteOffset: (pixel * channels + c) * 4, as: WinogradLane.self)
                }
                put(values.0, 0)
                put(values.1, 1)
                put(values.2, 2)
                put(values.3, 3)
              }
            }
          }
          rowDone((4 * ty)..<min(4 * ty + 4, t.outHeight))
        }
      }
      hook.forImage(
        image, output: imageOutput, height: t.outHeight, width: t.outWidth, channels: channels, transformImage)
    }
  }
}

/// Transforms each 4×4 tile of an output gradient (zeros past the edge) into
/// `e[point][tile][c] = (A e Aᵀ)[point]`, the weight gradient's second operand. Two passes,
/// three columns at a time in registers, as `winograd4TransformInput`; several images as
/// `winogradTransformOutputGradient`. Cost: O(images · tiles · 36 · channels) adds.
package func winograd4TransformOutputGradient(
  _ gradient: UnsafePointer<Float>, images: Int = 1, tiling t: WinogradTiling, channels: Int,
  into e: UnsafeMutablePointer<Float>
) {
  let pointBytes = winogradPointStride(images * t.tiles * channels, points: winograd4Points) * 4
  for image in 0..<images {
    let source = UnsafeRawPointer(gradient + image * t.outHeight * t.outWidth * channels)
    let imageTiles = e + image * t.tiles * channels
    for ty in 0..<t.tilesY {
      for tx in 0..<t.tilesX {
        let target = UnsafeMutableRawPointer(imageTiles + (ty * t.tilesX + tx) * channels)
        let inRows = min(4, t.outHeight - 4 * ty)
        let inColumns = min(4, t.outWidth - 4 * tx)
        for c in stride(from: 0, to: channels, by: 16) {
          /// `(e Aᵀ)[dy][q]` for the three columns `q` from `first` on.
          @inline(__always) func rowTimesAT(_ dy: Int, from first: Int) -> (WinogradLane, WinogradLane, WinogradLane) {
            @inline(__always) func load(_ dx: Int) -> WinogradLane {
              guard dy < inRows, dx < inColumns else { return WinogradLane() }
              let pixel = (4 * ty + dy) * t.outWidth + 4 * tx + dx
              return source.loadUnaligned(fromByteOffset: (pixel * channels + c) * 4, as: WinogradLane.self)
            }
            let row = winograd4A(load(0), load(1), load(2), load(3))
            return first == 0 ? (row.0, row.1, row.2) : (row.3, row.4, row.5)
          }
          // Half the columns at a time, in registers, as `winograd4TransformInput`.
          for first in [0, 3] {
            let (r0, r1, r2, r3) = (
              rowTimesAT(0, from: first), rowTimesAT(1, from: first), rowTimesAT(2, from: first),
              rowTimesAT(3, from: first)
            )
            // A ·, one column q at a time, to points p·6 + q.
            let base = target + c * 4 + first * pointBytes
            storeSix(winograd4A(r0.0, r1.0, r2.0, r3.0), at: base, stride: 6 * pointBytes)
            storeSix(winograd4A(r0.1, r1.1, r2.1, r3.1), at: base + pointBytes, stride: 6 * pointBytes)
            storeSix(winograd4A(r0.2, r1.2, r2.2, r3.2), at: base + 2 * pointBytes, stride: 6 * pointBytes)
          }
        }
      }
    }
  }
}

/// Transforms summed weight products back, `dW += Gᵀ products G`, into `weightGradient`
/// (HWIO). Cost: O(36 · in · out) adds.
public func winograd4AddWeightGradient(
  products: UnsafePointer<Float>, shape s: Conv3x3Shape, weightGradient: UnsafeMutablePointer<Float>
) {
  winograd4AddWeightGradient(
    products: products, pointStride: winogradPointStride(s.inChannels * s.outChannels, points: winograd4Points),
    inputChannels: 0..<s.inChannels, shape: s, weightGradient: weightGradient)
}

/// `winograd4AddWeightGradient` for the input channels `inputChannels` only, whose products
/// for point `p` and the channel `inputChannels.lowerBound + r` start at
/// `products + p · pointStride + r · out`. Cost: O(36 · inputChannels.count · out) adds.
func winograd4AddWeightGradient(
  products: UnsafePointer<Float>, pointStride: Int, inputChannels: Range<Int>, shape s: Conv3x3Shape,
  weightGradient: UnsafeMutablePointer<Float>
) {
  let (cin, cout) = (s.inChannels, s.outChannels)
  let source = UnsafeRawPointer(products)
  let target = UnsafeMutableRawPointer(weightGradient)
  for ci in inputChannels {
    let rowStart = (ci - inputChannels.lowerBound) * cout
    for co in stride(from: 0, to: cout, by: 16) {
      @inline(__always) func row(_ p: Int) -> (WinogradLane, WinogradLane, WinogradLane) {
        @inline(__always) func load(_ q: Int) -> WinogradLane {
          source.loadUnaligned(fromByteOffset: ((p * 6 + q) * pointStride + rowStart + co) * 4, as: WinogradLane.self)
        }
        return winograd4GT(load(0), load(1), load(2), load(3), load(4), load(5))
      }
      let r = (row(0), row(1), row(2), row(3), row(4), row(5))
      @inline(__always) func add(_ column: (WinogradLane, WinogradLane, WinogradLane), _ kx: Int) {
        @inline(__always) func put(_ value: WinogradLane, _ ky: Int) {
          let offset = (((ky * 3 + kx) * cin + ci) * cout + co) * 4
          let sum = target.loadUnaligned(fromByteOffset: offset, as: WinogradLane.self) + value
          target.storeBytes(of: sum, toByteOffset: offset, as: WinogradLane.self)
        }
        put(column.0, 0)
        put(column.1, 1)
        put(column.2, 2)
      }
      add(winograd4GT(r.0.0, r.1.0, r.2.0, r.3.0, r.4.0, r.5.0), 0)
      add(winograd4GT(r.0.1, r.1.1, r.2.1, r.3.1, r.4.1, r.5.1), 1)
      add(winograd4GT(r.0.2, r.1.2, r.2.2, r.3.2, r.4.2, r.5.2), 2)
    }
  }
}

/// Floats of the block `winograd4FinishWeightGradient` works in for `shape`: the 36
/// points' products of one GEMM tile height of input channels.
public func winograd4WeightBlockCount(_ shape: Conv3x3Shape) -> Int {
  winograd4Points
    * winogradPointStride(gemmTileRows(for: shape.inChannels) * shape.outChannels, points: winograd4Points)
}

/// Finishes a shard's weight gradient with its last images' tiles, without storing the
/// summed products: `dW += Gᵀ [(products, when given) + Σ_tiles U ⊙ E] G`, the bits of
/// `winogradAccumulateWeightProducts` then `winograd4AddWeightGradient`. It runs a GEMM
/// tile height of input channels at a time: their 36 GEMMs into `block`
/// (`winograd4WeightBlockCount`, a few hundred KB at most, so it stays in L2) or into
/// their rows of `products`, then their transform back while those are in cache, instead
/// of 36 · in · out products written out and read back (several MB for 128 channels).
/// Cost: 2 · 36 · images · tiles · in · out FLOP plus O(36 · in · out).
public func winograd4FinishWeightGradient(
  inputTiles u: UnsafePointer<Float>, outputGradientTiles e: UnsafePointer<Float>, shape s: Conv3x3Shape,
  images: Int = 1, products: UnsafeMutablePointer<Float>?, block: UnsafeMutablePointer<Float>,
  weightGradient: UnsafeMutablePointer<Float>
) {
  let tiles = images * WinogradTiling.forward(s, outputTile: 4).tiles
  let (cin, cout) = (s.inChannels, s.outChannels)
  let rows = gemmTileRows(for: cin)
  let (inStride, gradientStride) = (
    winogradPointStride(tiles * cin, points: winograd4Points),
    winogradPointStride(tiles * cout, points: winograd4Points)
  )
  for first in stride(from: 0, to: cin, by: rows) {
    let channels = first..<min(first + rows, cin)
    // The products so far are added to in place; without them the block starts from zero.
    let (target, pointStride) =
      products.map { ($0 + first * cout, winogradPointStride(cin * cout, points: winograd4Points)) }
      ?? (block, winogradPointStride(channels.count * cout, points: winograd4Points))
    for point in 0..<winograd4Points {
      gemm(
        m: channels.count, n: cout, k: tiles,
        a: u + point * inStride + first, aRowStride: 1, aColStride: cin,
        b: e + point * gradientStride, ldb: cout,
        c: target + point * pointStride, ldc: cout, accumulate: products != nil)
    }
    winograd4AddWeightGradient(
      products: target, pointStride: pointStride, inputChannels: channels, shape: s, weightGradient: weightGradient)
  }
}

// MARK: - The three passes of a convolution layer

/// Scratch sizes, in Floats, for the three passes of an F(4×4, 3×3) layer of `shape`, as
/// `WinogradScratch` gives them for F(2×2, 3×3), on up to `images` images at once.
public struct Winograd4Scratch: Sendable {
  public let inputTiles: Int, paddedInput: Int, paddedGradient: Int, gradientTiles: Int, products: Int

  public init(_ s: Conv3x3Shape, images: Int = 1) {
    let forward = WinogradTiling.forward(s, outputTile: 4)
    let backward = WinogradTiling.inputGradient(s, outputTile: 4)
    /// 36 points of `tiles` tiles of `channels` channels per image, at `winogradPointStride`.
    func points(_ tiles: Int, _ channels: Int) -> Int {
      winograd4Points * winogradPointStride(images * tiles * channels, points: winograd4Points)
    }
    inputTiles = points(forward.tiles, s.inChannels)
    paddedInput = forward.paddedCount
    paddedGradient = backward.paddedCount
    gradientTiles = max(points(forward.tiles, s.outChannels), points(backward.tiles, s.outChannels))
    products = max(points(forward.tiles, s.outChannels), points(backward.tiles, s.inChannels))
  }
}

/// Forward: `output = bias + conv3x3(input, w)` through F(4×4, 3×3), then `relu` when
/// asked, with `transformedWeights` from `winograd4TransformWeights`. Leaves the
/// transformed input in `inputTiles` for the weight gradient. `images` images go through
/// one GEMM per point, and `normalizingInput` applies, as in `winogradConv3x3Forward`;
/// `addingSums` adds each image's BatchNorm sums of the output (`winograd4TransformOutput`).
/// Cost: 2 · 36 · images · tiles · in · out FLOP plus O(images · tiles · 36 · channels) adds.
public func winograd4Conv3x3Forward(
  input: UnsafePointer<Float>, images: Int = 1, shape s: Conv3x3Shape, transformedWeights: UnsafePointer<Float>,
  bias: UnsafePointer<Float>?, relu applyReLU: Bool, paddedInput: UnsafeMutablePointer<Float>,
  inputTiles: UnsafeMutablePointer<Float>, products: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>,
  normalizingInput normalizing: FoldedBatchNorm? = nil, addingSums: BatchNormInputSums? = nil
) {
  let tiling = WinogradTiling.forward(s, outputTile: 4)
  winograd4TransformInput(
    input, images: images, tiling: tiling, padded: paddedInput, into: inputTiles, normalizing: normalizing)
  winogradMultiply(
    inputTiles, transformedWeights, tiles: images * tiling.tiles, inChannels: s.inChannels,
    outChannels: s.outChannels, points: winograd4Points, into: products)
  if let addingSums {
    winograd4TransformOutput(
      products, images: images, tiling: tiling, channels: s.outChannels, bias: bias, relu: applyReLU, into: output,
      rows: addingSums)
  } else {
    winograd4TransformOutput(
      products, images: images, tiling: tiling, channels: s.outChannels, bias: bias, relu: applyReLU, into: output,
      rows: WinogradOutputRowsNone())
  }
}

/// Input gradient: the output gradient, padded by 2 minus the convolution's padding,
/// correlated with the turned filters (`winograd4TransformWeights`' `flipped`).
/// Overwrites `inputGradient`, for `images` images as in `winograd4Conv3x3Forward`; with
/// `throughBatchNorm`, takes it through the ReLU of the BatchNorm below and adds that
/// BatchNorm's gradient sums (`BatchNormGradientRows`).
/// Cost: 2 · 36 · images · tiles · in · out FLOP plus the transforms.
public func winograd4Conv3x3InputGradient(
  outputGradient: UnsafePointer<Float>, images: Int = 1, shape s: Conv3x3Shape, flippedWeights: UnsafePointer<Float>,
  paddedGradient: UnsafeMutablePointer<Float>, gradientTiles: UnsafeMutablePointer<Float>,
  products: UnsafeMutablePointer<Float>, inputGradient: UnsafeMutablePointer<Float>,
  throughBatchNorm: BatchNormGradientRows? = nil
) {
  let tiling = WinogradTiling.inputGradient(s, outputTile: 4)
  winograd4TransformInput(outputGradient, images: images, tiling: tiling, padded: paddedGradient, into: gradientTiles)
  winogradMultiply(
    gradientTiles, flippedWeights, tiles: images * tiling.tiles, inChannels: s.outChannels,
    outChannels: s.inChannels, points: winograd4Points, into: products)
  if let throughBatchNorm {
    winograd4TransformOutput(
      products, images: images, tiling: tiling, channels: s.inChannels, bias: nil, into: inputGradient,
      rows: throughBatchNorm)
  } else {
    winograd4TransformOutput(
      products, images: images, tiling: tiling, channels: s.inChannels, bias: nil, into: inputGradient,
      rows: WinogradOutputRowsNone())
  }
}

/// Some images' share of the weight and bias gradients, as `winogradConv3x3WeightGradient`
/// for F(2×2, 3×3): their weight products are added to `products` (or replace them without
/// `accumulate`; `winograd4AddWeightGradient` finishes them), and `dB += Σ_p dOutput[p]`
/// when `biasGradient` is given; `images` images give the bits of one call per image.
/// With `finishing`, these are the shard's last images: the products (`products` so far,
/// when `accumulate`) go straight into the weight gradient instead, through a block
/// (`winograd4FinishWeightGradient`), with the same bits.
/// Cost: 2 · 36 · images · tiles · in · out FLOP plus O(images · tiles · 36 · out).
public func winograd4Conv3x3WeightGradient(
  inputTiles: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, images: Int = 1, shape s: Conv3x3Shape,
  gradientTiles: UnsafeMutablePointer<Float>, products: UnsafeMutablePointer<Float>, accumulate: Bool,
  biasGradient: UnsafeMutablePointer<Float>?,
  finishing: (block: UnsafeMutablePointer<Float>, weightGradient: UnsafeMutablePointer<Float>)? = nil
) {
  winograd4TransformOutputGradient(
    outputGradient, images: images, tiling: .forward(s, outputTile: 4), channels: s.outChannels, into: gradientTiles)
  if let finishing {
    winograd4FinishWeightGradient(
      inputTiles: inputTiles, outputGradientTiles: gradientTiles, shape: s, images: images,
      products: accumulate ? products : nil, block: finishing.block, weightGradient: finishing.weightGradient)
  } else {
    winogradAccumulateWeightProducts(
      inputTiles: inputTiles, outputGradientTiles: gradientTiles, shape: s, outputTile: 4, images: images,
      products: products, accumulate: accumulate)
  }
  if let biasGradient {
    addColumnSums(of: outputGradient, rows: images * s.outPixels, columns: s.outChannels, to: biasGradient)
  }
}
