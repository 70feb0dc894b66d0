// The filters of an F(2×2, 3×3) Winograd convolution: transformed (and flipped, for the
// input gradient) from HWIO weights, and the weight gradient back from the Winograd domain.

/// Transforms HWIO 3×3 filters: `v[point][ci][co] = (G g Gᵀ)[point]` where g is the
/// filter from input channel ci to output channel co, for `inputChannels` (all by
/// default), so that workers can share the work. Cost: O(16 · in · out) adds, 16
/// channels at a time; run once per parameter change.
@_spi(Kernels) public func winogradTransformWeights(
  _ weights: UnsafePointer<Float>, shape s: Conv3x3Shape, inputChannels: Range<Int>? = nil,
  into v: UnsafeMutablePointer<Float>
) {
  let (cin, cout) = (s.inChannels, s.outChannels)
  let pairs = cin * cout
  precondition(cout % 16 == 0, "Winograd filters: outChannels = \(cout) is not a multiple of 16")
  let source = UnsafeRawPointer(weights)
  let target = UnsafeMutableRawPointer(v)
  let half = WinogradLane(repeating: 0.5)
  /// `G x` for the 3 values of one column (or row) of 16 filters.
  @inline(__always) func transform(_ g0: WinogradLane, _ g1: WinogradLane, _ g2: WinogradLane)
    -> (WinogradLane, WinogradLane, WinogradLane, WinogradLane)
  {
    (g0, half * (g0 + g1 + g2), half * (g0 - g1 + g2), g2)
  }
  for ci in inputChannels ?? 0..<cin {
    for co in stride(from: 0, to: cout, by: 16) {
      @inline(__always) func g(_ ky: Int, _ kx: Int) -> WinogradLane {
        source.loadUnaligned(fromByteOffset: (((ky * 3 + kx) * cin + ci) * cout + co) * 4, as: WinogradLane.self)
      }
      // Columns first (G g), then each of the 4 resulting rows (· Gᵀ).
      let c0 = transform(g(0, 0), g(1, 0), g(2, 0))
      let c1 = transform(g(0, 1), g(1, 1), g(2, 1))
      let c2 = transform(g(0, 2), g(1, 2), g(2, 2))
      @inline(__always) func store(_ row: (WinogradLane, WinogradLane, WinogradLane, WinogradLane), _ p: Int) {
        let offset = ((p * 4) * pairs + ci * cout + co) * 4
        target.storeBytes(of: row.0, toByteOffset: offset, as: WinogradLane.self)
        target.storeBytes(of: row.1, toByteOffset: offset + pairs * 4, as: WinogradLane.self)
        target.storeBytes(of: row.2, toByteOffset: offset + 2 * pairs * 4, as: WinogradLane.self)
        target.storeBytes(of: row.3, toByteOffset: offset + 3 * pairs * 4, as: WinogradLane.self)
      }
      store(transform(c0.0, c1.0, c2.0), 0)
      store(transform(c0.1, c1.1, c2.1), 1)
      store(transform(c0.2, c1.2, c2.2), 2)
      store(transform(c0.3, c1.3, c2.3), 3)
    }
  }
}

/// The input gradient's filters from the forward ones: `flipped[point][co][ci]` is the
/// transform of `g[ky][kx] = w[2 - ky][2 - kx][ci][co]`, in and out channels swapped and
/// the filter turned by 180°. Turning g only swaps points 0 and 3 along each axis of
/// G g Gᵀ (G's middle rows are symmetric, its outer rows mirror each other), so this is
/// a transpose with permuted points. Only `inputChannels` (all by default) are written,
/// and only those of `v` are read. Cost: O(16 · in · out) moves.
@_spi(Kernels) public func winogradFlipTransformedWeights(
  _ v: UnsafePointer<Float>, shape s: Conv3x3Shape, inputChannels: Range<Int>? = nil,
  into flipped: UnsafeMutablePointer<Float>
) {
  let (cin, cout) = (s.inChannels, s.outChannels)
  let pairs = cin * cout
  @inline(__always) func mirror(_ i: Int) -> Int { i == 0 || i == 3 ? 3 - i : i }
  for p in 0..<4 {
    for q in 0..<4 {
      let source = v + (mirror(p) * 4 + mirror(q)) * pairs
      let target = flipped + (p * 4 + q) * pairs
      for ci in inputChannels ?? 0..<cin {
        for co in 0..<cout { target[co * cin + ci] = source[ci * cout + co] }
      }
    }
  }
}

/// Adds the weight gradient of `images` images, still in the Winograd domain, to
/// `products` (or, without `accumulate`, overwrites them with it):
/// `products[point][ci][co] += Σ_tiles u[point][tile][ci] · e[point][tile][co]`, from the
/// forward pass's input tiles `u` and the transformed output gradient `e`, the images'
/// tiles in order. Each element adds its products one by one in that order, so one call
/// for several images gives the bits of one call per image. Summing there over a shard
/// and transforming back once (`winogradAddWeightGradient`) gives the same gradient as
/// transforming every image's. Cost: 2 · 16 · images · tiles · in · out FLOP.
package func winogradAccumulateWeightProducts(
  inputTiles u: UnsafePointer<Float>, outputGradientTiles e: UnsafePointer<Float>,
  shape s: Conv3x3Shape, outputTile: Int = 2, images: Int = 1, products: UnsafeMutablePointer<Float>,
  accumulate: Bool
) {
  let tiling = WinogradTiling.forward(s, outputTile: outputTile)
  let tiles = images * tiling.tiles
  let (cin, cout) = (s.inChannels, s.outChannels)
  let (inStride, gradientStride, productStride) = (
    winogradPointStride(tiles * cin, points: tiling.points), winogradPointStride(tiles * cout, points: tiling.points),
    winogradPointStride(cin * cout, points: tiling.points)
  )
  for point in 0..<tiling.points {
    gemm(
      m: cin, n: cout, k: tiles,
      a: u + point * inStride, aRowStride: 1, aColStride: cin,
      b: e + point * gradientStride, ldb: cout,
      c: products + point * productStride, ldc: cout, accumulate: accumulate)
  }
}

/// Transforms summed weight products back, `dW += Gᵀ products G`, into `weightGradient`
/// (HWIO). Cost: O(16 · in · out) adds.
@_spi(Kernels) public func winogradAddWeightGradient(
  products: UnsafePointer<Float>, shape s: Conv3x3Shape, weightGradient: UnsafeMutablePointer<Float>
) {
  let (cin, cout) = (s.inChannels, s.outChannels)
  let pairs = cin * cout
  let source = UnsafeRawPointer(products)
  let target = UnsafeMutableRawPointer(weightGradient)
  for ci in 0..<cin {
    for co in stride(from: 0, to: cout, by: 16) {
      @inline(__always) func load(_ p: Int, _ q: Int) -> WinogradLane {
        source.loadUnaligned(fromByteOffset: ((p * 4 + q) * pairs + ci * cout + co) * 4, as: WinogradLane.self)
      }
      let s0 = winogradGT(load(0, 0), load(0, 1), load(0, 2), load(0, 3))
      let s1 = winogradGT(load(1, 0), load(1, 1), load(1, 2), load(1, 3))
      let s2 = winogradGT(load(2, 0), load(2, 1), load(2, 2), load(2, 3))
      let s3 = winogradGT(load(3, 0), load(3, 1), load(3, 2), load(3, 3))
      @inline(__always) func add(_ column: (WinogradLane, WinogradLane, WinogradLane), _ kx: Int) {
        let offset = ((kx * cin + ci) * cout + co) * 4
        let row = 3 * pairs * 4
        let sum0 = target.loadUnaligned(fromByteOffset: offset, as: WinogradLane.self) + column.0
        let sum1 = target.loadUnaligned(fromByteOffset: offset + row, as: WinogradLane.self) + column.1
        let sum2 = target.loadUnaligned(fromByteOffset: offset + 2 * row, as: WinogradLane.self) + column.2
        target.storeBytes(of: sum0, toByteOffset: offset, as: WinogradLane.self)
        target.storeBytes(of: sum1, toByteOffset: offset + row, as: WinogradLane.self)
        target.storeBytes(of: sum2, toByteOffset: offset + 2 * row, as: WinogradLane.self)
      }
      add(winogradGT(s0.0, s1.0, s2.0, s3.0), 0)
      add(winogradGT(s0.1, s1.1, s2.1, s3.1), 1)
      add(winogradGT(s0.2, s1.2, s2.2, s3.2), 2)
    }
  }
}
