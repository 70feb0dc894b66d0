@_spi(Kernels) import PTrain
import XCTest

/// `denseTreeWeightGradient` against what it replaces: the GEMM per shard into the
/// shard's own slot, then the reduction tree's local folds. The bits must be the same.
final class DenseTreeGradientTests: KernelTestCase {
  /// One worker's block of a step: `shards` shards of `shardSize` images (the batch's last
  /// has `lastShardImages`) cut into `blocks` blocks, of which block `block` is checked.
  struct Case {
    let shards: Int, blocks: Int, block: Int, shardSize: Int, lastShardImages: Int
    let inputs: Int, outputs: Int
  }

  func testBlockSumsHaveTheBitsOfShardSlotsFoldedByTheTree() {
    let cases = [
      Case(shards: 8, blocks: 1, block: 0, shardSize: 4, lastShardImages: 4, inputs: 48, outputs: 10),
      Case(shards: 7, blocks: 2, block: 1, shardSize: 4, lastShardImages: 3, inputs: 37, outputs: 5),
      Case(shards: 13, blocks: 3, block: 1, shardSize: 2, lastShardImages: 2, inputs: 16, outputs: 7),
      Case(shards: 11, blocks: 4, block: 3, shardSize: 3, lastShardImages: 1, inputs: 33, outputs: 4),
      Case(shards: 1, blocks: 1, block: 0, shardSize: 4, lastShardImages: 3, inputs: 5, outputs: 3),
      Case(shards: 6, blocks: 5, block: 0, shardSize: 4, lastShardImages: 4, inputs: 20, outputs: 9),
      // Two full tiles of 64 columns (4 lanes with AVX-512), then 22 columns in two lanes.
      Case(shards: 5, blocks: 1, block: 0, shardSize: 4, lastShardImages: 2, inputs: 150, outputs: 6),
    ]
    for (number, test) in cases.enumerated() {
      let block = evenShare(of: test.shards, part: test.block, parts: test.blocks)
      let imagesOf = block.map { $0 == test.shards - 1 ? test.lastShardImages : test.shardSize }
      let images = imagesOf.reduce(0, +)
      let weights = test.inputs * test.outputs
      let x = randomFloats(images * test.inputs, seed: UInt64(10 * number + 1)).map { $0 * 3 }
      let dy = randomFloats(images * test.outputs, seed: UInt64(10 * number + 2)).map { $0 * 1e-2 }
      // The reference: each shard's dW = dYᵀ · X in its own slot, folded by the tree.
      let slots = (0..<test.shards).map { _ in UnsafeMutablePointer<Float>.allocate(capacity: weights) }
      defer { slots.forEach { $0.deallocate() } }
      var first = 0
      for (k, shard) in block.enumerated() {
        x.withUnsafeBufferPointer { x in
          dy.withUnsafeBufferPointer { dy in
            denseAddWeightGradient(
              inputs: x.baseAddress! + first * test.inputs, outputGradients: dy.baseAddress! + first * test.outputs,
              images: imagesOf[k], inputCount: test.inputs, outputCount: test.outputs, overwrite: true,
              weightGradient: slots[shard])
          }
        }
        first += imagesOf[k]
        ReductionTree.foldLocalPairs(
          after: shard, block: block, shards: test.shards, slots: slots, ranges: [0..<weights])
      }
      var program: [Int] = []
      var roots: [Int] = []
      ReductionTree.localFoldProgram(block: block, shards: test.shards, program: &program, roots: &roots)
      let targets = roots.map { _ in UnsafeMutablePointer<Float>.allocate(capacity: weights) }
      defer { targets.forEach { $0.deallocate() } }
      var scratch = [Float](repeating: .nan, count: denseTreeScratchCount(blockShards: block.count))
      x.withUnsafeBufferPointer { x in
        dy.withUnsafeBufferPointer { dy in
          program.withUnsafeBufferPointer { program in
            targets.withUnsafeBufferPointer { targets in
              scratch.withUnsafeMutableBufferPointer { scratch in
                denseTreeWeightGradient(
                  inputs: x.baseAddress!, outputGradients: dy.baseAddress!, images: images,
                  shardSize: test.shardSize, inputCount: test.inputs, outputCount: test.outputs, program: program,
                  roots: targets, scratch: scratch)
              }
            }
          }
        }
      }
      XCTAssertFalse(roots.isEmpty, "case \(number): a block leaves at least one subtree")
      for (root, target) in zip(roots, targets) {
        XCTAssert(block.contains(root), "case \(number): root \(root) is one of the block's shards")
        let expected = Array(UnsafeBufferPointer(start: slots[root], count: weights))
        let got = Array(UnsafeBufferPointer(start: target, count: weights))
        XCTAssertEqual(got.map(\.bitPattern), expected.map(\.bitPattern), "case \(number), root shard \(root)")
      }
    }
  }

  /// The program pushes every shard of the block once, in order, and adds exactly the
  /// pairs `foldLocalPairs` adds; its stack never holds more than
  /// `denseTreeScratchCount(blockShards:)` has room for.
  func testFoldProgramMatchesTheLocalPairs() {
    let entry = denseTreeScratchCount(blockShards: 1) / 3  // a stack entry's Floats (3 entries for 1 shard)
    for shards in 1...70 {
      for blocks in 1...min(shards, 7) {
        for part in 0..<blocks {
          let block = evenShare(of: shards, part: part, parts: blocks)
          var program: [Int] = []
          var roots: [Int] = []
          ReductionTree.localFoldProgram(block: block, shards: shards, program: &program, roots: &roots)
          var pairs = 0
          for shard in block {
            ReductionTree.forEachLocalPair(after: shard, block: block, shards: shards) { _, _ in pairs += 1 }
          }
          XCTAssertEqual(program.filter { $0 >= 0 }, Array(0..<block.count), "\(shards) shards, block \(block)")
          XCTAssertEqual(program.filter { $0 < 0 }.count, pairs, "\(shards) shards, block \(block)")
          XCTAssertEqual(roots.count, block.count - pairs, "\(shards) shards, block \(block)")
          var (depth, deepest) = (0, 0)
          for step in program {
            depth += step >= 0 ? 1 : -1
            deepest = max(deepest, depth)
          }
          XCTAssertLessThanOrEqual(
            deepest * entry, denseTreeScratchCount(blockShards: block.count), "\(shards) shards, block \(block)")
        }
      }
    }
  }
}
