/// A dense layer's weight gradient over a worker's block of shards, summed in the order of
/// the reduction tree (see `ReductionTree.localFoldProgram`), without a parameter-sized
/// slot per shard.
///
/// Each shard's `dW = dYᵀ · X` (what `denseAddWeightGradient` writes into the shard's slot)
/// is worked out for a tile of 4 rows × `denseTreeLanes` vectors in registers, pushed on a
/// small stack in `scratch`, and added to its neighbour as the tree adds the shards' slots;
/// the block's subtrees that are left (the pairs the reduce phase adds) are written to
/// their slots once. Each element adds the same products in the same order as the GEMM per
/// shard followed by `ReductionTree.foldLocalPairs` (a chain of fused multiply-adds from
/// +0 per shard, then `left + right`), so the bits are the same; but the weights are
/// written once per block instead of once per shard, and never read back to be folded.
///
/// - Parameters:
///   - x, dy: the block's images' inputs (`images` × `inputCount`) and output gradients
///     (`images` × `outputCount`), shard after shard, `shardSize` images each (the last
///     may have fewer).
///   - program: the block's fold program: `s ≥ 0` pushes shard `s`'s gradient (the
///     block's `s`-th), `-1` adds the top two.
///   - roots: where each subtree left on the stack goes, bottom first: `outputCount` ×
///     `inputCount` Floats each.
///   - scratch: the stack, `denseTreeScratchCount(blockShards:)` Floats for a block of that
///     many shards (a temporary allocation of more than 1 KB would be a heap allocation).
/// Cost: 2 · images · inputCount · outputCount FLOP; O(stack) work per tile and shard.
@_spi(Kernels) public func denseTreeWeightGradient(
  inputs x: UnsafePointer<Float>, outputGradients dy: UnsafePointer<Float>, images: Int, shardSize: Int,
  inputCount: Int, outputCount: Int, program: UnsafeBufferPointer<Int>,
  roots: UnsafeBufferPointer<UnsafeMutablePointer<Float>>, scratch: UnsafeMutableBufferPointer<Float>
) {
  typealias Lane = SIMD16<Float>
  let rows = denseTreeRows
  var depth = 0
  var deepest = 0
  for step in program {
    depth += step >= 0 ? 1 : -1
    precondition(depth >= 1, "denseTreeWeightGradient: the program adds more than it pushed")
    deepest = max(deepest, depth)
  }
  precondition(
    depth == roots.count, "denseTreeWeightGradient: the program leaves \(depth) sums for \(roots.count) roots")
  precondition(
    rows == 4 && (denseTreeLanes == 2 || denseTreeLanes == 4),
    "denseTreeWeightGradient: its tile is written out as 4 rows × 2 or 4 lanes")
  let entry = rows * denseTreeLanes  // vectors per stack entry: lane 0's rows, then lane 1's, …
  precondition(scratch.count >= deepest * entry * Lane.scalarCount, "denseTreeWeightGradient: scratch too small")
  guard deepest > 0 else { return }
  let stack = UnsafeMutableRawPointer(scratch.baseAddress!).bindMemory(to: Lane.self, capacity: deepest * entry)
  var column = 0
  while column < inputCount {
    let width = min(denseTreeLanes * Lane.scalarCount, inputCount - column)
    /// The columns of lane `lane` of this tile that exist: 0 ... 16.
    @inline(__always) func columns(_ lane: Int) -> Int {
      min(max(width - lane * Lane.scalarCount, 0), Lane.scalarCount)
    }
    /// Lane `lane` of this tile's columns of image `image`'s input, zeros past the last.
    @inline(__always) func input(_ image: Int, _ lane: Int) -> Lane {
      let source = x + image * inputCount + column + lane * Lane.scalarCount
      let count = columns(lane)
      guard count < Lane.scalarCount else { return UnsafeRawPointer(source).loadUnaligned(as: Lane.self) }
      var vector = Lane()
      for k in 0..<count { vector[k] = source[k] }
      return vector
    }
    var row = 0
    while row < outputCount {
      // Rows past the last are clamped onto it: they compute and store its values again.
      @inline(__always) func r(_ k: Int) -> Int { min(row + k, outputCount - 1) }
      var top = 0
      for step in program {
        if step >= 0 {
          // Two or four lanes of columns: 8 or 16 independent chains of FMAs, each a
          // shard's few images long, and each broadcast of an output gradient feeds 2 or 4.
          let wide = denseTreeLanes == 4
          var (c0, c1, c2, c3) = (Lane(), Lane(), Lane(), Lane())
          var (e0, e1, e2, e3) = (Lane(), Lane(), Lane(), Lane())
          var (f0, f1, f2, f3) = (Lane(), Lane(), Lane(), Lane())
          var (h0, h1, h2, h3) = (Lane(), Lane(), Lane(), Lane())
          let first = step * shardSize
          for image in first..<min(first + shardSize, images) {
            let (v, w) = (input(image, 0), input(image, 1))
            let (y, z) = wide ? (input(image, 2), input(image, 3)) : (Lane(), Lane())
            let g = dy + image * outputCount
            let (g0, g1, g2, g3) = (g[r(0)], g[r(1)], g[r(2)], g[r(3)])
            c0 = c0.addingProduct(g0, v)
            e0 = e0.addingProduct(g0, w)
            c1 = c1.addingProduct(g1, v)
            e1 = e1.addingProduct(g1, w)
            c2 = c2.addingProduct(g2, v)
            e2 = e2.addingProduct(g2, w)
            c3 = c3.addingProduct(g3, v)
            e3 = e3.addingProduct(g3, w)
            if wide {
              f0 = f0.addingProduct(g0, y)
              h0 = h0.addingProduct(g0, z)
              f1 = f1.addingProduct(g1, y)
              h1 = h1.addingProduct(g1, z)
              f2 = f2.addingProduct(g2, y)
              h2 = h2.addingProduct(g2, z)
              f3 = f3.addingProduct(g3, y)
              h3 = h3.addingProduct(g3, z)
            }
          }
          let base = top * entry
          (stack[base], stack[base + 1], stack[base + 2], stack[base + 3]) = (c0, c1, c2, c3)
          (stack[base + 4], stack[base + 5], stack[base + 6], stack[base + 7]) = (e0, e1, e2, e3)
          if wide {
            (stack[base + 8], stack[base + 9], stack[base + 10], stack[base + 11]) = (f0, f1, f2, f3)
            (stack[base + 12], stack[base + 13], stack[base + 14], stack[base + 15]) = (h0, h1, h2, h3)
          }
          top += 1
        } else {
          top -= 1
          for k in 0..<entry { stack[(top - 1) * entry + k] += stack[top * entry + k] }
        }
      }
      /// Writes `vector` to lane `lane` of row `r` of `root` (clamped rows hold the same values).
      @inline(__always) func store(
        _ vector: Lane, row r: Int, lane: Int, of root: UnsafeMutablePointer<Float>
      ) {
        let target = root + r * inputCount + column + lane * Lane.scalarCount
        let count = columns(lane)
        guard count < Lane.scalarCount else {
          return UnsafeMutableRawPointer(target).storeBytes(of: vector, as: Lane.self)
        }
        for j in 0..<count { target[j] = vector[j] }
      }
      for (index, root) in roots.enumerated() {
        for lane in 0..<denseTreeLanes {
          for k in 0..<rows { store(stack[index * entry + lane * rows + k], row: r(k), lane: lane, of: root) }
        }
      }
      row += rows
    }
    column += width
  }
}

/// The rows of `denseTreeWeightGradient`'s tiles: 4 rows × `denseTreeLanes` vectors of
/// 16 columns. 8 rows × 1 lane, and panels of 4 rows × 128 columns run a lane at a time,
/// measured slower than 4 × 1.
let denseTreeRows = 4

/// The vectors of 16 columns in a row of `denseTreeWeightGradient`'s tiles, so that its
/// 8 or 16 chains of fused multiply-adds, each only a shard's images long, overlap: 4 with
/// AVX-512, where each broadcast of an output gradient then feeds 4 FMAs (broadcasts from
/// memory, not FMAs, limit a tile of 2 on an Ice Lake server), and 2 with AVX2, whose 16
/// registers hold only 8 accumulators of 16 Floats. The kernel is written out for 2 and 4.
#if PTRAIN_AVX512
  let denseTreeLanes = 4
#else
  let denseTreeLanes = 2
#endif

/// The Floats `denseTreeWeightGradient` needs as scratch for a block of up to
/// `blockShards` shards: its stack holds the subtrees that start the block and end inside
/// it (distinct powers of two: the tree's pairs that reach back before the block leave
/// them open) and those still waiting for a partner (distinct powers of two, as in a
/// binary counter), at most ⌊log₂ blockShards⌋ + 1 of each. Cost: O(1).
@_spi(Kernels) public func denseTreeScratchCount(blockShards: Int) -> Int {
  let sizes = Int.bitWidth - max(blockShards, 1).leadingZeroBitCount  // ⌊log₂ blockShards⌋ + 1
  return (2 * sizes + 1) * denseTreeRows * denseTreeLanes * SIMD16<Float>.scalarCount
}
