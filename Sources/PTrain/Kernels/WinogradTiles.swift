// The three passes of a 3×3 convolution through Winograd F(m×m, 3×3) with m of 4 or more
// (Lavin & Gray, 2015): the tile walk, the GEMMs and the buffers, shared by the schemes
// that fill in one tile's transforms (`WinogradF4`, `WinogradF5`).
//
// As F(2×2, 3×3) in Winograd.swift, each m×m output tile comes from an α×α input patch
// (α = m + 2) through α² points: the forward pass is `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`, the
// weight gradient F(3×3, m×m), `dW = Gᵀ [Σ_tiles (A e Aᵀ) ⊙ (Bᵀ d B)] G`, reusing the
// forward pass's input tiles, and the input gradient the forward pass over the padded
// output gradient with the filters turned by 180° (which, unlike F(2×2, 3×3)'s, are not a
// permutation of the forward points, so they are transformed from the turned weights).
// Data layouts are those of Winograd.swift with α² points, each at `winogradPointStride`;
// the transforms run on 16 channels at a time.

/// A Winograd F(m×m, 3×3) scheme: its output tile and its transforms of one tile, on 16
/// channels (one `WinogradLane`) at a time. The passes (`conv3x3Forward` and the rest, in
/// the extension) walk the tiles and run the GEMMs; a scheme's transforms are inlined
/// into them.
@_spi(Kernels) public protocol WinogradScheme {
  /// m: the side of an output tile. An input tile's side is m + 2.
  static var outputTile: Int { get }

  /// `Bᵀ d B` of the (m + 2)² input patch whose top left pixel is at `corner` (pixels
  /// `pixelBytes` apart, rows `rowBytes`), stored as point p · (m + 2) + q at
  /// `target + (p · (m + 2) + q) · pointBytes`; `scratch` holds (m + 2)² lanes.
  static func transformInputTile(
    _ corner: UnsafeRawPointer, rowBytes: Int, pixelBytes: Int, into target: UnsafeMutableRawPointer, pointBytes: Int,
    scratch: UnsafeMutablePointer<WinogradLane>)

  /// `Aᵀ M A` of the point tile at `source` (points `pointBytes` apart), handed to `put`
  /// as (value, dy, dx) for the output columns dx below `columns` and every dy below m;
  /// `scratch` holds m · (m + 2) lanes.
  static func transformOutputTile(
    _ source: UnsafeRawPointer, pointBytes: Int, columns: Int, scratch: UnsafeMutablePointer<WinogradLane>,
    put: (_ value: WinogradLane, _ dy: Int, _ dx: Int) -> Void)

  /// `A e Aᵀ` of the m×m output-gradient tile whose pixels `load(dy, dx)` gives, stored
  /// as `transformInputTile` stores; `scratch` holds m · (m + 2) lanes.
  static func transformGradientTile(
    _ load: (_ dy: Int, _ dx: Int) -> WinogradLane, into target: UnsafeMutableRawPointer, pointBytes: Int,
    scratch: UnsafeMutablePointer<WinogradLane>)

  /// `G g` for the 3 taps of one column (or row) of 16 filters, handed to `put` as
  /// (value, i) for each of the m + 2 values.
  static func filterColumn(
    _ g0: WinogradLane, _ g1: WinogradLane, _ g2: WinogradLane, _ put: (_ value: WinogradLane, _ i: Int) -> Void)

  /// `Gᵀ x` for the m + 2 values `x(i)` of one column (or row) of a point tile: 3 taps.
  static func weightGradientColumn(_ x: (_ i: Int) -> WinogradLane) -> (WinogradLane, WinogradLane, WinogradLane)
}

/// Three columns of vectors of the largest input tile (F(5×5, 3×3)'s 7), on the stack:
/// `withUnsafeTemporaryAllocation` puts more than 1 KB on the heap, and the filter
/// transforms run once per 16 filters, thousands of times a step.
typealias TileColumns = InlineArray<21, WinogradLane>

/// The rows of vectors between the two passes of `transformOutputTile` and
/// `transformGradientTile` (at most 5 × 7), on the stack.
typealias TileRows = InlineArray<35, WinogradLane>

/// The rows of vectors between the two passes of `transformInputTile` (at most 7 × 7), on
/// the stack.
typealias TilePoints = InlineArray<49, WinogradLane>

/// Runs `body` on a zeroed scratch tile of `count` vectors on the stack (`TileRows`,
/// `TilePoints`). Cost: zeroing it, once per call.
@inline(__always) func withScratch<let count: Int>(
  _: InlineArray<count, WinogradLane>.Type, _ body: (UnsafeMutablePointer<WinogradLane>) -> Void
) {
  var lanes = InlineArray<count, WinogradLane>(repeating: WinogradLane())
  var span = lanes.mutableSpan
  span.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
}

extension WinogradScheme {
  /// The side of an input tile, m + 2.
  @inline(__always) public static var inputTile: Int { outputTile + 2 }
  /// The points of a tile: (m + 2)².
  @inline(__always) public static var points: Int { inputTile * inputTile }

  /// `G g Gᵀ` of 16 filters whose taps `tap(ky, kx)` gives, handed to `store` as
  /// (value, p, q) for each point p · (m + 2) + q: `filterColumn` down each column of
  /// taps, then along each row, through 3 · (m + 2) vectors on the stack.
  @inline(__always) static func transformFilter(
    _ tap: (_ ky: Int, _ kx: Int) -> WinogradLane, _ store: (_ value: WinogradLane, _ p: Int, _ q: Int) -> Void
  ) {
    precondition(3 * inputTile <= TileColumns.count, "Winograd: an input tile wider than TileColumns holds")
    var columns = TileColumns(repeating: WinogradLane())  // (G g)[p] of column kx at kx · (m + 2) + p
    for kx in 0..<3 {
      filterColumn(tap(0, kx), tap(1, kx), tap(2, kx)) { value, p in columns[kx * inputTile + p] = value }
    }
    for p in 0..<inputTile {
      filterColumn(columns[p], columns[inputTile + p], columns[2 * inputTile + p]) { value, q in store(value, p, q) }
    }
  }

  /// `Gᵀ M G` of the point tile whose point p · (m + 2) + q `load(p, q)` gives, handed to
  /// `add` as (value, ky, kx) for each of the 9 taps: `weightGradientColumn` along each
  /// row of points, then down each column, through 3 · (m + 2) vectors on the stack.
  @inline(__always) static func transformWeightGradient(
    _ load: (_ p: Int, _ q: Int) -> WinogradLane, _ add: (_ value: WinogradLane, _ ky: Int, _ kx: Int) -> Void
  ) {
    precondition(3 * inputTile <= TileColumns.count, "Winograd: an input tile wider than TileColumns holds")
    var rows = TileColumns(repeating: WinogradLane())  // (Gᵀ row p)[kx] at kx · (m + 2) + p
    for p in 0..<inputTile {
      let row = weightGradientColumn { q in load(p, q) }
      rows[p] = row.0
      rows[inputTile + p] = row.1
      rows[2 * inputTile + p] = row.2
    }
    for kx in 0..<3 {
      let column = weightGradientColumn { p in rows[kx * inputTile + p] }
      add(column.0, 0, kx)
      add(column.1, 1, kx)
      add(column.2, 2, kx)
    }
  }

  /// Floats of the transformed filters of `shape` (and of their weight products): the
  /// points of in × out, each at `winogradPointStride`.
  public static func weightCount(_ shape: Conv3x3Shape) -> Int {
    points * winogradPointStride(shape.inChannels * shape.outChannels, points: points)
  }

  /// The forward tiling of `shape` for this scheme.
  static func forwardTiling(_ shape: Conv3x3Shape) -> WinogradTiling { .forward(shape, outputTile: outputTile) }

  /// Transforms every input tile: `u[point][tile][c] = (Bᵀ d B)[point]`, after copying
  /// the input into the interior of `padded` (whose border must be zero), as
  /// `winogradTransformInput` does for F(2×2, 3×3). Several images are laid out as
  /// `winogradTransformInput` lays them out. Cost: O(images · tiles · points · channels) adds.
  package static func transformInput(
    _ input: UnsafePointer<Float>, images: Int = 1, tiling t: WinogradTiling, padded: UnsafeMutablePointer<Float>,
    into u: UnsafeMutablePointer<Float>, normalizing: FoldedBatchNorm? = nil
  ) {
    precondition(t.outputTile == outputTile)
    let channels = t.channels
    let rowBytes = t.paddedWidth * channels * 4
    let pixelBytes = channels * 4
    let pointBytes = winogradPointStride(images * t.tiles * channels, points: points) * 4
    let source = UnsafeRawPointer(padded)
    precondition(points <= TilePoints.count, "Winograd: an input tile larger than TilePoints holds")
    withScratch(TilePoints.self) { scratch in
      for image in 0..<images {
        t.fillPadded(input + image * t.inputCount, padded, normalizing: normalizing)
        let imageTiles = u + image * t.tiles * channels
        for ty in 0..<t.tilesY {
          for tx in 0..<t.tilesX {
            let corner = source + (outputTile * ty) * rowBytes + outputTile * tx * pixelBytes
            let target = UnsafeMutableRawPointer(imageTiles + (ty * t.tilesX + tx) * channels)
            for c in stride(from: 0, to: channels * 4, by: 64) {
              transformInputTile(
                corner + c, rowBytes: rowBytes, pixelBytes: pixelBytes, into: target + c, pointBytes: pointBytes,
                scratch: scratch)
            }
          }
        }
      }
    }
  }

  /// Transforms HWIO 3×3 filters, for `inputChannels` (all by default):
  /// `v[point][ci][co] = (G g Gᵀ)[point]`, and, when `flipped` is given, the filters turned
  /// by 180° with in and out swapped, `flipped[point][co][ci]`, for the input gradient. The
  /// forward filters run 16 output channels at a time and the flipped ones 16 input channels
  /// at a time (`transformFlippedWeights`, through `turnedTaps`, 9 · in · out Floats, or a
  /// temporary buffer without it), so both store whole vectors.
  /// Cost: O(points · in · out) adds; run once per parameter change.
  public static func transformWeights(
    _ weights: UnsafePointer<Float>, shape s: Conv3x3Shape, inputChannels: Range<Int>? = nil,
    into v: UnsafeMutablePointer<Float>, flipped: UnsafeMutablePointer<Float>? = nil,
    turnedTaps: UnsafeMutablePointer<Float>? = nil
  ) {
    let (cin, cout) = (s.inChannels, s.outChannels)
    let pairs = cin * cout
    let pointBytes = winogradPointStride(pairs, points: points) * 4
    precondition(cout % 16 == 0, "Winograd filters: outChannels = \(cout) is not a multiple of 16")
    let channels = inputChannels ?? 0..<cin
    let source = UnsafeRawPointer(weights)
    let target = UnsafeMutableRawPointer(v)
    for ci in channels {
      for co in stride(from: 0, to: cout, by: 16) {
        let base = target + (ci * cout + co) * 4
        transformFilter({ ky, kx in
          source.loadUnaligned(fromByteOffset: (((ky * 3 + kx) * cin + ci) * cout + co) * 4, as: WinogradLane.self)
        }) { value, p, q in
          (base + (p * inputTile + q) * pointBytes).storeBytes(of: value, as: WinogradLane.self)
        }
      }
    }
    guard let flipped else { return }
    guard let turnedTaps else {
      withUnsafeTemporaryAllocation(of: Float.self, capacity: 9 * pairs) { scratch in
        transformFlippedWeights(
          weights, shape: s, inputChannels: channels, into: flipped, turnedTaps: scratch.baseAddress!)
      }
      return
    }
    transformFlippedWeights(weights, shape: s, inputChannels: channels, into: flipped, turnedTaps: turnedTaps)
  }

  /// The flipped filters of `transformWeights` for `inputChannels`:
  /// `flipped[point][co][ci]`, 16 input channels of one output channel at a time, each
  /// vector loaded whole from the taps first transposed into `turnedTaps` as [tap][co][ci]
  /// (a gather with a stride of `out` straight from HWIO measured several times slower);
  /// past the range's end, lanes are zero and not stored. Cost: O(points · in · out) adds.
  static func transformFlippedWeights(
    _ weights: UnsafePointer<Float>, shape s: Conv3x3Shape, inputChannels channels: Range<Int>,
    into flipped: UnsafeMutablePointer<Float>, turnedTaps: UnsafeMutablePointer<Float>
  ) {
    let (cin, cout) = (s.inChannels, s.outChannels)
    let pointStride = winogradPointStride(cin * cout, points: points)
    for tap in 0..<9 {
      transposeMatrix(
        weights + tap * cin * cout, rows: cin, columns: cout, rowRange: channels, into: turnedTaps + tap * cin * cout)
    }
    for co in 0..<cout {
      for first in stride(from: channels.lowerBound, to: channels.upperBound, by: 16) {
        let lanes = min(16, channels.upperBound - first)
        let base = flipped + co * cin + first
        transformFilter({ ky, kx in
          let taps = turnedTaps + (((2 - ky) * 3 + (2 - kx)) * cout + co) * cin + first
          if lanes == 16 { return UnsafeRawPointer(taps).loadUnaligned(as: WinogradLane.self) }
          var gathered = WinogradLane()
          for lane in 0..<lanes { gathered[lane] = taps[lane] }
          return gathered
        }) { value, p, q in
          let point = base + (p * inputTile + q) * pointStride
          guard lanes < 16 else {
            UnsafeMutableRawPointer(point).storeBytes(of: value, as: WinogradLane.self)
            return
          }
          for lane in 0..<lanes { point[lane] = value[lane] }
        }
      }
    }
  }

  /// Transforms the point products back into output tiles (`Aᵀ M A`) and writes the
  /// output (`t.outHeight` × `t.outWidth` × `channels`, NHWC), plus `bias` when given,
  /// through `relu` when asked. Tile outputs past the edge are dropped. Several images are
  /// read and written as `winogradTransformOutput` does. `rows` works on each row of tiles
  /// as soon as it is written, while in cache (see `WinogradOutputRows`).
  /// Cost: O(images · tiles · points · channels) adds, plus `rows`'.
  package static func transformOutput<Rows: WinogradOutputRows>(
    _ m: UnsafePointer<Float>, images: Int = 1, tiling t: WinogradTiling, channels: Int, bias: UnsafePointer<Float>?,
    relu applyReLU: Bool = false, into output: UnsafeMutablePointer<Float>, rows hook: Rows
  ) {
    precondition(t.outputTile == outputTile)
    let pointBytes = winogradPointStride(images * t.tiles * channels, points: points) * 4
    let tile = outputTile
    precondition(tile * inputTile <= TileRows.count, "Winograd: an output tile larger than TileRows holds")
    withScratch(TileRows.self) { scratch in
      for image in 0..<images {
        let imageOutput = output + image * t.outHeight * t.outWidth * channels
        let target = UnsafeMutableRawPointer(imageOutput)
        let imageProducts = m + image * t.tiles * channels
        /// Transforms the image's tiles, handing `rowDone` the output rows of each row of tiles.
        @inline(__always) func transformImage(_ rowDone: (Range<Int>) -> Void) {
          for ty in 0..<t.tilesY {
            for tx in 0..<t.tilesX {
              let source = UnsafeRawPointer(imageProducts + (ty * t.tilesX + tx) * channels)
              let outRows = min(tile, t.outHeight - tile * ty)
              let outColumns = min(tile, t.outWidth - tile * tx)
              for c in stride(from: 0, to: channels, by: 16) {
                let b =
                  bias.map { UnsafeRawPointer($0).loadUnaligned(fromByteOffset: c * 4, as: WinogradLane.self) }
                  ?? WinogradLane()
                transformOutputTile(
                  source + c * 4, pointBytes: pointBytes, columns: outColumns, scratch: scratch
                ) { value, dy, dx in
                  guard dy < outRows else { return }
                  let sum = value + b
                  let pixel = (tile * ty + dy) * t.outWidth + tile * tx + dx
                  target.storeBytes(
                    of: applyReLU ? relu(sum) : sum, toByteOffset: (pixel * channels + c) * 4, as: WinogradLane.self)
                }
              }
            }
            rowDone((tile * ty)..<min(tile * ty + tile, t.outHeight))
          }
        }
        hook.forImage(
          image, output: imageOutput, height: t.outHeight, width: t.outWidth, channels: channels, transformImage)
      }
    }
  }

  /// Transforms each output tile of an output gradient (zeros past the edge) into
  /// `e[point][tile][c] = (A e Aᵀ)[point]`, the weight gradient's second operand; several
  /// images as `winogradTransformOutputGradient`. Cost: O(images · tiles · points · channels) adds.
  package static func transformOutputGradient(
    _ gradient: UnsafePointer<Float>, images: Int = 1, tiling t: WinogradTiling, channels: Int,
    into e: UnsafeMutablePointer<Float>
  ) {
    precondition(t.outputTile == outputTile)
    let pointBytes = winogradPointStride(images * t.tiles * channels, points: points) * 4
    let tile = outputTile
    precondition(tile * inputTile <= TileRows.count, "Winograd: an output tile larger than TileRows holds")
    withScratch(TileRows.self) { scratch in
      for image in 0..<images {
        let source = UnsafeRawPointer(gradient + image * t.outHeight * t.outWidth * channels)
        let imageTiles = e + image * t.tiles * channels
        for ty in 0..<t.tilesY {
          for tx in 0..<t.tilesX {
            let target = UnsafeMutableRawPointer(imageTiles + (ty * t.tilesX + tx) * channels)
            let inRows = min(tile, t.outHeight - tile * ty)
            let inColumns = min(tile, t.outWidth - tile * tx)
            for c in stride(from: 0, to: channels, by: 16) {
              transformGradientTile(
                { dy, dx in
                  guard dy < inRows, dx < inColumns else { return WinogradLane() }
                  let pixel = (tile * ty + dy) * t.outWidth + tile * tx + dx
                  return source.loadUnaligned(fromByteOffset: (pixel * channels + c) * 4, as: WinogradLane.self)
                }, into: target + c * 4, pointBytes: pointBytes, scratch: scratch)
            }
          }
        }
      }
    }
  }

  /// Transforms summed weight products back, `dW += Gᵀ products G`, into `weightGradient`
  /// (HWIO). Cost: O(points · in · out) adds.
  public static func addWeightGradient(
    products: UnsafePointer<Float>, shape s: Conv3x3Shape, weightGradient: UnsafeMutablePointer<Float>
  ) {
    addWeightGradient(
      products: products, pointStride: winogradPointStride(s.inChannels * s.outChannels, points: points),
      inputChannels: 0..<s.inChannels, shape: s, weightGradient: weightGradient)
  }

  /// `addWeightGradient` for the input channels `inputChannels` only, whose products for
  /// point `p` and the channel `inputChannels.lowerBound + r` start at
  /// `products + p · pointStride + r · out`. Cost: O(points · inputChannels.count · out) adds.
  static func addWeightGradient(
    products: UnsafePointer<Float>, pointStride: Int, inputChannels: Range<Int>, shape s: Conv3x3Shape,
    weightGradient: UnsafeMutablePointer<Float>
  ) {
    let (cin, cout) = (s.inChannels, s.outChannels)
    let source = UnsafeRawPointer(products)
    let target = UnsafeMutableRawPointer(weightGradient)
    for ci in inputChannels {
      let rowStart = (ci - inputChannels.lowerBound) * cout
      for co in stride(from: 0, to: cout, by: 16) {
        transformWeightGradient({ p, q in
          source.loadUnaligned(
            fromByteOffset: ((p * inputTile + q) * pointStride + rowStart + co) * 4, as: WinogradLane.self)
        }) { value, ky, kx in
          let offset = (((ky * 3 + kx) * cin + ci) * cout + co) * 4
          let sum = target.loadUnaligned(fromByteOffset: offset, as: WinogradLane.self) + value
          target.storeBytes(of: sum, toByteOffset: offset, as: WinogradLane.self)
        }
      }
    }
  }

  /// Floats of the block `finishWeightGradient` works in for `shape`: the points'
  /// products of the tallest GEMM tile's height of input channels.
  public static func weightBlockCount(_ shape: Conv3x3Shape) -> Int {
    points * winogradPointStride(min(gemmTileRowChoices().0, shape.inChannels) * shape.outChannels, points: points)
  }

  /// Finishes a shard's weight gradient with its last images' tiles, without storing the
  /// summed products: `dW += Gᵀ [(products, when given) + Σ_tiles U ⊙ E] G`, the bits of
  /// `winogradAccumulateWeightProducts` then `addWeightGradient`. It runs one GEMM
  /// tile of input channels at a time (`gemmNextTileRows`): their GEMMs (one per point)
  /// into `block` (`weightBlockCount`, a few hundred KB at most, so it stays in L2) or into their rows
  /// of `products`, then their transform back while those are in cache, instead of
  /// points · in · out products written out and read back (several MB for 128 channels).
  /// Cost: 2 · points · images · tiles · in · out FLOP plus O(points · in · out).
  public static func finishWeightGradient(
    inputTiles u: UnsafePointer<Float>, outputGradientTiles e: UnsafePointer<Float>, shape s: Conv3x3Shape,
    images: Int = 1, products: UnsafeMutablePointer<Float>?, block: UnsafeMutablePointer<Float>,
    weightGradient: UnsafeMutablePointer<Float>
  ) {
    let tiles = images * forwardTiling(s).tiles
    let (cin, cout) = (s.inChannels, s.outChannels)
    let (inStride, gradientStride) = (
      winogradPointStride(tiles * cin, points: points), winogradPointStride(tiles * cout, points: points)
    )
    var first = 0
    while first < cin {
      let channels = first..<min(first + gemmNextTileRows(remaining: cin - first), cin)
      defer { first = channels.upperBound }
      // The products so far are added to in place; without them the block starts from zero.
      let (target, pointStride) =
        products.map { ($0 + first * cout, winogradPointStride(cin * cout, points: points)) }
        ?? (block, winogradPointStride(channels.count * cout, points: points))
      for point in 0..<points {
        gemm(
          m: channels.count, n: cout, k: tiles,
          a: u + point * inStride + first, aRowStride: 1, aColStride: cin,
          b: e + point * gradientStride, ldb: cout,
          c: target + point * pointStride, ldc: cout, accumulate: products != nil)
      }
      addWeightGradient(
        products: target, pointStride: pointStride, inputChannels: channels, shape: s, weightGradient: weightGradient)
    }
  }

}
