// The three passes of a 3×3 convolution through Winograd F(m×m, 3×3) with m of 4 or more
// (Lavin & Gray, 2015): the tile walk, the GEMMs and the buffers, shared by the schemes
// that fill in one tile's transforms (`WinogradF4`, `WinogradF5`); their filters are in
// WinogradSchemeFilters.swift.
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
/// transforms run once per 16 filters, thousands of times a step, so their callers
/// zero one (`withScratch`) before their loops, not each transform.
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

  /// The forward tiling of `shape` for this scheme.
  static func forwardTiling(_ shape: Conv3x3Shape) -> WinogradTiling { .forward(shape, outputTile: outputTile) }

  /// Transforms every input tile: `u[point][tile][c] = (Bᵀ d B)[point]`, after copying
  /// the input into the interior of `padded` (whose border must be zero), as
  /// `winogradTransformInput` does for F(2×2, 3×3). Several images are laid out as
  /// `winogradTransformInput` lays them out. With `made`, the input is the gradient it
  /// makes (`input` is not read), and `padded` holds a copy per image, which stay for
  /// `WinogradGradientSource`. Cost: O(images · tiles · points · channels) adds.
  package static func transformInput(
    _ input: UnsafePointer<Float>, images: Int = 1, tiling t: WinogradTiling, padded: UnsafeMutablePointer<Float>,
    into u: UnsafeMutablePointer<Float>, normalizing: FoldedBatchNorm? = nil, made: BatchNormInputGradient? = nil
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
        let imagePadded = made == nil ? 0 : image * t.paddedCount
        if let made {
          t.fillPadded(from: made, at: image * t.inputCount, padded + imagePadded)
        } else {
          t.fillPadded(input + image * t.inputCount, padded, normalizing: normalizing)
        }
        let imageTiles = u + image * t.tiles * channels
        for ty in 0..<t.tilesY {
          for tx in 0..<t.tilesX {
            let corner = source + imagePadded * 4 + (outputTile * ty) * rowBytes + outputTile * tx * pixelBytes
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

  /// Transforms each output tile of an output gradient (zeros past the edge), read from
  /// `gradient`, into
  /// `e[point][tile][c] = (A e Aᵀ)[point]`, the weight gradient's second operand; several
  /// images as `winogradTransformOutputGradient`. Cost: O(images · tiles · points · channels) adds.
  package static func transformOutputGradient(
    _ gradient: WinogradGradientSource, images: Int = 1, tiling t: WinogradTiling, channels: Int,
    into e: UnsafeMutablePointer<Float>
  ) {
    precondition(t.outputTile == outputTile)
    let pointBytes = winogradPointStride(images * t.tiles * channels, points: points) * 4
    let tile = outputTile
    precondition(tile * inputTile <= TileRows.count, "Winograd: an output tile larger than TileRows holds")
    withScratch(TileRows.self) { scratch in
      for image in 0..<images {
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
                  return gradient.lane(image: image, y: tile * ty + dy, x: tile * tx + dx, channel: c)
                }, into: target + c * 4, pointBytes: pointBytes, scratch: scratch)
            }
          }
        }
      }
    }
  }
}
