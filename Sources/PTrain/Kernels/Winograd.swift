// Winograd F(2×2, 3×3) for 3×3 convolutions with many channels (Lavin & Gray, 2015).
//
// A 3×3 correlation is cut into 2×2 output tiles. Each tile's 4×4 input patch d and each
// 3×3 filter g are transformed into 16 "points", multiplied point by point and summed over
// input channels, which is one GEMM per point, then transformed back:
//
//   Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A
//
// That is 16 multiplies per output tile and channel pair instead of 36, so 2.25× fewer
// FLOP before tile padding. The same scheme gives both gradients: the input gradient is
// the correlation of the zero-padded output gradient with the flipped filters (over its
// own, larger tiling), and the weight gradient is F(3×3, 2×2),
// `dW = Gᵀ [ Σ_tiles (A e Aᵀ) ⊙ (Bᵀ d B) ] G`, which reuses the forward pass's input tiles.
//
// Transformed data is point-major: `u[(point · tiles + tile) · channels + c]`, so each
// point's GEMM reads a plain row-major matrix. Channel counts must be multiples of 16;
// the transforms run on 16 channels at a time. All transforms use only adds and halvings.

/// The tiling of a 3×3 correlation over an NHWC image with `padding` zeros on each side,
/// into `outputTile` × `outputTile` output tiles (2 for F(2×2, 3×3), 4 for F(4×4, 3×3)),
/// each read from an (outputTile + 2)² input patch. The last row and column of tiles may
/// reach past the output.
package struct WinogradTiling: Sendable, Equatable {
  /// The input image: height × width × channels.
  package let height: Int, width: Int, channels: Int
  /// Zeros assumed around the input on every side.
  package let padding: Int
  /// The side of an output tile: 2 or 4.
  package let outputTile: Int

  package init(height: Int, width: Int, channels: Int, padding: Int, outputTile: Int = 2) {
    precondition(channels % 16 == 0, "Winograd tiling: channels = \(channels) is not a multiple of 16")
    self.height = height
    self.width = width
    self.channels = channels
    self.padding = padding
    self.outputTile = outputTile
  }

  /// The forward pass of `shape`: its input, with the convolution's padding.
  package static func forward(_ shape: Conv3x3Shape, outputTile: Int = 2) -> WinogradTiling {
    WinogradTiling(
      height: shape.height, width: shape.width, channels: shape.inChannels, padding: shape.padding,
      outputTile: outputTile)
  }

  /// The input gradient of `shape`: its output gradient, padded by 2 minus the
  /// convolution's padding, correlated with the flipped filters gives a gradient the size
  /// of the input.
  package static func inputGradient(_ shape: Conv3x3Shape, outputTile: Int = 2) -> WinogradTiling {
    WinogradTiling(
      height: shape.outHeight, width: shape.outWidth, channels: shape.outChannels, padding: 2 - shape.padding,
      outputTile: outputTile)
  }

  package var outHeight: Int { height + 2 * padding - 2 }
  package var outWidth: Int { width + 2 * padding - 2 }
  package var tilesY: Int { (outHeight + outputTile - 1) / outputTile }
  package var tilesX: Int { (outWidth + outputTile - 1) / outputTile }
  package var tiles: Int { tilesY * tilesX }
  /// Transformed values per tile and channel: (outputTile + 2)².
  package var points: Int { (outputTile + 2) * (outputTile + 2) }
  /// Floats of the transformed input: points × tiles × channels.
  package var transformedCount: Int { points * tiles * channels }
  /// The zero-padded copy of the input that the input transform reads: every tile's
  /// patch lies inside it, `paddedHeight` × `paddedWidth` × channels, with the
  /// input at row and column `padding`.
  package var paddedHeight: Int { outputTile * tilesY + 2 }
  package var paddedWidth: Int { outputTile * tilesX + 2 }
  package var paddedCount: Int { paddedHeight * paddedWidth * channels }
  /// Floats of one input image: height × width × channels.
  package var inputCount: Int { height * width * channels }

  /// Copies `input` into the interior of `padded`, whose border stays zero, through
  /// `normalizing` when given (a BatchNorm below, applied as `batchNormApply` would).
  /// Cost: O(input).
  package func fillPadded(
    _ input: UnsafePointer<Float>, _ padded: UnsafeMutablePointer<Float>,
    normalizing: FoldedBatchNorm? = nil
  ) {
    let rowFloats = paddedWidth * channels
    for y in 0..<height {
      let target = padded + (y + padding) * rowFloats + padding * channels
      guard let normalizing else {
        target.update(from: input + y * width * channels, count: width * channels)
        continue
      }
      batchNormApply(
        input + y * width * channels, pixels: width, channels: channels, scale: normalizing.scale,
        offset: normalizing.offset, relu: normalizing.relu, output: target)
    }
  }
}

extension WinogradTiling {
  /// Writes the image of `made` that starts `offset` Floats in into the interior of
  /// `padded`, whose border stays zero, as `fillPadded` copies a stored one. Cost: O(input).
  func fillPadded(from made: BatchNormInputGradient, at offset: Int, _ padded: UnsafeMutablePointer<Float>) {
    let rowFloats = paddedWidth * channels
    for y in 0..<height {
      made.write(
        pixels: width, channels: channels, from: offset + y * width * channels,
        to: padded + (y + padding) * rowFloats + padding * channels)
    }
  }
}

/// Floats from one point's rows to the next in a `[point][tile][channel]` buffer whose
/// points hold `count` Floats each (images · tiles · channels). F(2×2, 3×3) packs them.
/// F(4×4, 3×3) rounds them up to an odd number of 64-byte lines, so that a tile's 36
/// points, which its transforms read or write together, fall in 36 different L1 sets:
/// a multiple of 4 KB apart (as 16 tiles of 32 channels per image are), they all fell in
/// one set of 8 ways and the transforms ran about 1.6 times slower.
package func winogradPointStride(_ count: Int, points: Int) -> Int {
  guard points > winogradPoints else { return count }
  return ((count + 15) / 16 | 1) * 16
}

/// The number of Winograd points of F(2×2, 3×3): a 4×4 tile.
package let winogradPoints = 16

/// Floats of `winogradTransformWeights`' output for `shape`: 16 × in × out channels.
@_spi(Kernels) public func winogradWeightCount(_ shape: Conv3x3Shape) -> Int {
  winogradPoints * shape.inChannels * shape.outChannels
}

/// 16 channels of a Winograd transform: the unit every transform works on.
@_spi(Kernels) public typealias WinogradLane = SIMD16<Float>

/// `Bᵀ x` for the 4 values of one column (or `x B` for one row) of a 4×4 input tile.
@inline(__always)
func winogradB(_ x0: WinogradLane, _ x1: WinogradLane, _ x2: WinogradLane, _ x3: WinogradLane)
  -> (WinogradLane, WinogradLane, WinogradLane, WinogradLane)
{
  (x0 - x2, x1 + x2, x2 - x1, x1 - x3)
}

/// `A x` for the 2 values of one column (or row) of a 2×2 output-gradient tile.
@inline(__always)
func winogradA(_ x0: WinogradLane, _ x1: WinogradLane)
  -> (WinogradLane, WinogradLane, WinogradLane, WinogradLane)
{
  (x0, x0 + x1, x0 - x1, -x1)
}

/// `Aᵀ x` for the 4 values of one column (or row) of a point tile: 2 outputs.
@inline(__always)
func winogradAT(_ x0: WinogradLane, _ x1: WinogradLane, _ x2: WinogradLane, _ x3: WinogradLane)
  -> (WinogradLane, WinogradLane)
{
  (x0 + x1 + x2, x1 - x2 - x3)
}

/// `Gᵀ x` for the 4 values of one column (or row) of a point tile: 3 outputs.
@inline(__always)
func winogradGT(_ x0: WinogradLane, _ x1: WinogradLane, _ x2: WinogradLane, _ x3: WinogradLane)
  -> (WinogradLane, WinogradLane, WinogradLane)
{
  let half = WinogradLane(repeating: 0.5)
  let sum = half * (x1 + x2)
  return (x0 + sum, half * (x1 - x2), sum + x3)
}

/// Transforms every 4×4 input tile of `images` images (NHWC, one after another):
/// `u[point][image · tiles + tile][c] = (Bᵀ d B)[point]`, with zeros outside the image, so
/// that each point's GEMM covers all the images' tiles. Each image is first copied into
/// the interior of `padded` (`t.paddedCount` Floats) whose border must be zero; only the
/// interior is ever written, so a buffer zeroed once stays valid. The tiles then read it
/// without bounds checks. Cost: O(images · tiles · 16 · channels) adds and O(input) copies.
package func winogradTransformInput(
  _ input: UnsafePointer<Float>, images: Int = 1, tiling t: WinogradTiling, padded: UnsafeMutablePointer<Float>,
  into u: UnsafeMutablePointer<Float>, normalizing: FoldedBatchNorm? = nil
) {
  let channels = t.channels
  let rowFloats = t.paddedWidth * channels
  let pointStride = images * t.tiles * channels
  let source = UnsafeRawPointer(padded)
  for image in 0..<images {
    t.fillPadded(input + image * t.inputCount, padded, normalizing: normalizing)
    let imageTiles = u + image * t.tiles * channels
    for ty in 0..<t.tilesY {
      for tx in 0..<t.tilesX {
        let corner = source + ((2 * ty) * rowFloats + 2 * tx * channels) * 4
        let target = UnsafeMutableRawPointer(imageTiles + (ty * t.tilesX + tx) * channels)
        let (rowBytes, pixelBytes, pointBytes) = (rowFloats * 4, channels * 4, pointStride * 4)
        for c in stride(from: 0, to: channels, by: 16) {
          // Pointers that step along rows and points keep the 32 addresses out of registers.
          var row = corner + c * 4
          @inline(__always) func nextRow() -> (WinogradLane, WinogradLane, WinogradLane, WinogradLane) {
            defer { row += rowBytes }
            return winogradB(
              row.loadUnaligned(as: WinogradLane.self), (row + pixelBytes).loadUnaligned(as: WinogradLane.self),
              (row + 2 * pixelBytes).loadUnaligned(as: WinogradLane.self),
              (row + 3 * pixelBytes).loadUnaligned(as: WinogradLane.self))
          }
          let r0 = nextRow()
          let r1 = nextRow()
          let r2 = nextRow()
          let r3 = nextRow()
          let k0 = winogradB(r0.0, r1.0, r2.0, r3.0)
          let k1 = winogradB(r0.1, r1.1, r2.1, r3.1)
          let k2 = winogradB(r0.2, r1.2, r2.2, r3.2)
          let k3 = winogradB(r0.3, r1.3, r2.3, r3.3)
          var point = target + c * 4
          @inline(__always) func store(_ value: WinogradLane) {
            point.storeBytes(of: value, as: WinogradLane.self)
            point += pointBytes
          }
          // Point p · 4 + q is entry p of column q.
          store(k0.0)
          store(k1.0)
          store(k2.0)
          store(k3.0)
          store(k0.1)
          store(k1.1)
          store(k2.1)
          store(k3.1)
          store(k0.2)
          store(k1.2)
          store(k2.2)
          store(k3.2)
          store(k0.3)
          store(k1.3)
          store(k2.3)
          store(k3.3)
        }
      }
    }
  }
}

/// One GEMM per point: `m[point] = u[point] · v[point]`, (tiles × in) · (in × out), for
/// `points` points (16 for F(2×2, 3×3), 36 for F(4×4, 3×3)).
/// Cost: 2 · points · tiles · in · out FLOP.
package func winogradMultiply(
  _ u: UnsafePointer<Float>, _ v: UnsafePointer<Float>, tiles: Int, inChannels: Int,
  outChannels: Int, points: Int = winogradPoints, into m: UnsafeMutablePointer<Float>
) {
  let (inStride, filterStride, outStride) = (
    winogradPointStride(tiles * inChannels, points: points),
    winogradPointStride(inChannels * outChannels, points: points),
    winogradPointStride(tiles * outChannels, points: points)
  )
  for point in 0..<points {
    gemm(
      m: tiles, n: outChannels, k: inChannels,
      a: u + point * inStride, aRowStride: inChannels, aColStride: 1,
      b: v + point * filterStride, ldb: outChannels,
      c: m + point * outStride, ldc: outChannels, accumulate: false)
  }
}

/// Transforms the point products of `images` images (laid out as
/// `winogradTransformInput` lays out tiles) back into 2×2 output tiles and writes the
/// outputs (`t.outHeight` × `t.outWidth` × `channels` each, NHWC, one after another),
/// plus `bias` when given, through `relu` when asked. Tile outputs past the edge are
/// dropped. Cost: O(images · tiles · 16 · channels) adds.
package func winogradTransformOutput(
  _ m: UnsafePointer<Float>, images: Int = 1, tiling t: WinogradTiling, channels: Int, bias: UnsafePointer<Float>?,
  relu applyReLU: Bool = false, into output: UnsafeMutablePointer<Float>
) {
  let pointStride = images * t.tiles * channels
  for image in 0..<images {
    let target = UnsafeMutableRawPointer(output + image * t.outHeight * t.outWidth * channels)
    let imageProducts = m + image * t.tiles * channels
    for ty in 0..<t.tilesY {
      for tx in 0..<t.tilesX {
        let source = UnsafeRawPointer(imageProducts + (ty * t.tilesX + tx) * channels)
        let rows = min(2, t.outHeight - 2 * ty)
        let columns = min(2, t.outWidth - 2 * tx)
        for c in stride(from: 0, to: channels, by: 16) {
          @inline(__always) func load(_ p: Int, _ q: Int) -> WinogradLane {
            source.loadUnaligned(fromByteOffset: ((p * 4 + q) * pointStride + c) * 4, as: WinogradLane.self)
          }
          let s0 = winogradAT(load(0, 0), load(0, 1), load(0, 2), load(0, 3))
          let s1 = winogradAT(load(1, 0), load(1, 1), load(1, 2), load(1, 3))
          let s2 = winogradAT(load(2, 0), load(2, 1), load(2, 2), load(2, 3))
          let s3 = winogradAT(load(3, 0), load(3, 1), load(3, 2), load(3, 3))
          let left = winogradAT(s0.0, s1.0, s2.0, s3.0)
          let right = winogradAT(s0.1, s1.1, s2.1, s3.1)
          let b =
            bias.map { UnsafeRawPointer($0).loadUnaligned(fromByteOffset: c * 4, as: WinogradLane.self) }
            ?? WinogradLane()
          @inline(__always) func store(_ value: WinogradLane, _ dy: Int, _ dx: Int) {
            guard dy < rows, dx < columns else { return }
            let pixel = (2 * ty + dy) * t.outWidth + 2 * tx + dx
            let sum = value + b
            target.storeBytes(
              of: applyReLU ? relu(sum) : sum, toByteOffset: (pixel * channels + c) * 4, as: WinogradLane.self)
          }
          store(left.0, 0, 0)
          store(right.0, 0, 1)
          store(left.1, 1, 0)
          store(right.1, 1, 1)
        }
      }
    }
  }
}

/// Transforms each 2×2 tile of the output gradients of `images` images (`t.outHeight` ×
/// `t.outWidth` × `channels` each, one after another, zeros past the edge) into
/// `e[point][image · tiles + tile][c] = (A e Aᵀ)[point]`, the weight gradient's second
/// operand. Cost: O(images · tiles · 16 · channels) adds.
package func winogradTransformOutputGradient(
  _ gradient: UnsafePointer<Float>, images: Int = 1, tiling t: WinogradTiling, channels: Int,
  into e: UnsafeMutablePointer<Float>
) {
  let pointStride = images * t.tiles * channels
  let zero = WinogradLane()
  for image in 0..<images {
    let source = UnsafeRawPointer(gradient + image * t.outHeight * t.outWidth * channels)
    let imageTiles = e + image * t.tiles * channels
    for ty in 0..<t.tilesY {
      for tx in 0..<t.tilesX {
        let target = UnsafeMutableRawPointer(imageTiles + (ty * t.tilesX + tx) * channels)
        for c in stride(from: 0, to: channels, by: 16) {
          @inline(__always) func load(_ dy: Int, _ dx: Int) -> WinogradLane {
            let y = 2 * ty + dy
            let x = 2 * tx + dx
            guard y < t.outHeight, x < t.outWidth else { return zero }
            return source.loadUnaligned(
              fromByteOffset: ((y * t.outWidth + x) * channels + c) * 4, as: WinogradLane.self)
          }
          let r0 = winogradA(load(0, 0), load(0, 1))
          let r1 = winogradA(load(1, 0), load(1, 1))
          @inline(__always) func store(
            _ column: (WinogradLane, WinogradLane, WinogradLane, WinogradLane), _ q: Int
          ) {
            let offset = (q * pointStride + c) * 4
            let row = 4 * pointStride * 4
            target.storeBytes(of: column.0, toByteOffset: offset, as: WinogradLane.self)
            target.storeBytes(of: column.1, toByteOffset: offset + row, as: WinogradLane.self)
            target.storeBytes(of: column.2, toByteOffset: offset + 2 * row, as: WinogradLane.self)
            target.storeBytes(of: column.3, toByteOffset: offset + 3 * row, as: WinogradLane.self)
          }
          store(winogradA(r0.0, r1.0), 0)
          store(winogradA(r0.1, r1.1), 1)
          store(winogradA(r0.2, r1.2), 2)
          store(winogradA(r0.3, r1.3), 3)
        }
      }
    }
  }
}
