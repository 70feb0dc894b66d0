// A Winograd F(m×m, 3×3) scheme's filters (WinogradTiles.swift has the tiles' passes):
// the filters transformed (and turned, for the input gradient) from HWIO weights, and the
// weight gradient transformed back from the point products.

extension WinogradScheme {
  /// `G g Gᵀ` of 16 filters whose taps `tap(ky, kx)` gives, handed to `store` as
  /// (value, p, q) for each point p · (m + 2) + q: `filterColumn` down each column of
  /// taps, then along each row, through the 3 · (m + 2) vectors of `columns` (a
  /// `TileColumns` scratch, every vector written before it is read).
  @inline(__always) static func transformFilter(
    _ tap: (_ ky: Int, _ kx: Int) -> WinogradLane, through columns: UnsafeMutablePointer<WinogradLane>,
    _ store: (_ value: WinogradLane, _ p: Int, _ q: Int) -> Void
  ) {
    precondition(3 * inputTile <= TileColumns.count, "Winograd: an input tile wider than TileColumns holds")
    // (G g)[p] of column kx at kx · (m + 2) + p
    for kx in 0..<3 {
      filterColumn(tap(0, kx), tap(1, kx), tap(2, kx)) { value, p in columns[kx * inputTile + p] = value }
    }
    for p in 0..<inputTile {
      filterColumn(columns[p], columns[inputTile + p], columns[2 * inputTile + p]) { value, q in store(value, p, q) }
    }
  }

  /// `Gᵀ M G` of the point tile whose point p · (m + 2) + q `load(p, q)` gives, handed to
  /// `add` as (value, ky, kx) for each of the 9 taps: `weightGradientColumn` along each
  /// row of points, then down each column, through the 3 · (m + 2) vectors of `rows` (a
  /// `TileColumns` scratch, every vector written before it is read).
  @inline(__always) static func transformWeightGradient(
    _ load: (_ p: Int, _ q: Int) -> WinogradLane, through rows: UnsafeMutablePointer<WinogradLane>,
    _ add: (_ value: WinogradLane, _ ky: Int, _ kx: Int) -> Void
  ) {
    precondition(3 * inputTile <= TileColumns.count, "Winograd: an input tile wider than TileColumns holds")
    // (Gᵀ row p)[kx] at kx · (m + 2) + p
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
    withScratch(TileColumns.self) { columns in
      for ci in channels {
        for co in stride(from: 0, to: cout, by: 16) {
          let base = target + (ci * cout + co) * 4
          transformFilter(
            { ky, kx in
              source.loadUnaligned(
                fromByteOffset: (((ky * 3 + kx) * cin + ci) * cout + co) * 4, as: WinogradLane.self)
            }, through: columns
          ) { value, p, q in
            (base + (p * inputTile + q) * pointBytes).storeBytes(of: value, as: WinogradLane.self)
          }
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
    withScratch(TileColumns.self) { columns in
      for co in 0..<cout {
        for first in stride(from: channels.lowerBound, to: channels.upperBound, by: 16) {
          let lanes = min(16, channels.upperBound - first)
          let base = flipped + co * cin + first
          transformFilter(
            { ky, kx in
              let taps = turnedTaps + (((2 - ky) * 3 + (2 - kx)) * cout + co) * cin + first
              if lanes == 16 { return UnsafeRawPointer(taps).loadUnaligned(as: WinogradLane.self) }
              var gathered = WinogradLane()
              for lane in 0..<lanes { gathered[lane] = taps[lane] }
              return gathered
            }, through: columns
          ) { value, p, q in
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
    withScratch(TileColumns.self) { rows in
      for ci in inputChannels {
        let rowStart = (ci - inputChannels.lowerBound) * cout
        for co in stride(from: 0, to: cout, by: 16) {
          transformWeightGradient(
            { p, q in
              source.loadUnaligned(
                fromByteOffset: ((p * inputTile + q) * pointStride + rowStart + co) * 4, as: WinogradLane.self)
            }, through: rows
          ) { value, ky, kx in
            let offset = (((ky * 3 + kx) * cin + ci) * cout + co) * 4
            let sum = target.loadUnaligned(fromByteOffset: offset, as: WinogradLane.self) + value
            target.storeBytes(of: sum, toByteOffset: offset, as: WinogradLane.self)
          }
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
