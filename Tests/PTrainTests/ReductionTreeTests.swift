import Foundation
import PTrain
import Synchronization
import XCTest

/// The gradient tree's sum is the same bits however the shards are cut into processes ×
/// workers: the pairs inside each worker's block, then (under MPI) those inside each
/// rank's block, then those that span ranks, add the same operands in the same order as
/// one worker adding them all.
final class ReductionTreeTests: XCTestCase {
  /// Shard `shard`'s gradient: `length` random Floats.
  func shardValues(_ shard: Int, length: Int) -> [Float] {
    randomFloats(length, seed: UInt64(shard + 1)).map { $0 * 1e3 + 1e-3 }
  }

  /// Sums `shards` slots of `length` random Floats the way a trainer with `ranks` ×
  /// `workers` blocks does, shards taking turns in slots (`gradientSlotIndices`), each
  /// written just before it is folded, and returns slot 0.
  func treeSum(shards: Int, ranks: Int, workers: Int, length: Int = 37) -> [Float] {
    let blocks = ranks * workers
    let buffers = (0..<shards).map { _ in UnsafeMutablePointer<Float>.allocate(capacity: length) }
    defer { buffers.forEach { $0.deallocate() } }
    let indices = ReductionTree.gradientSlotIndices(shards: shards, blocks: blocks, localBlocks: 0..<blocks)
    let mapped = indices.map { buffers[$0] }
    let all = [0..<length]
    for block in 0..<blocks {
      let range = evenShare(of: shards, part: block, parts: blocks)
      let used = Set(range.map { indices[$0] })
      XCTAssert(used.allSatisfy(range.contains), "a block's shards stay in its slots")
      // ⌊log₂ n⌋ + 1 for a block that starts a subtree; one that starts inside one also
      // keeps the roots of the subtrees it cannot finish.
      let levels = Int.bitWidth - range.count.leadingZeroBitCount
      XCTAssertLessThanOrEqual(used.count, range.lowerBound == 0 ? levels : 2 * levels)
      for shard in range {
        mapped[shard].update(from: shardValues(shard, length: length), count: length)
        ReductionTree.foldLocalPairs(after: shard, block: range, shards: shards, slots: mapped, ranges: all)
      }
    }
    let slots = mapped
    if ranks > 1 {
      for rank in 0..<ranks {
        ReductionTree.reducePairsInsideRank(
          rank, ranks: ranks, slots, shards: shards, blocks: blocks, range: 0..<length)
      }
    }
    ReductionTree.reduceCrossWorkerPairs(slots, shards: shards, workers: ranks > 1 ? ranks : blocks, range: 0..<length)
    return Array(UnsafeBufferPointer(start: slots[0], count: length))
  }

  func testEveryCutOfTheShardsGivesTheSameBits() {
    for shards in [1, 2, 3, 5, 8, 13, 32] {
      let reference = treeSum(shards: shards, ranks: 1, workers: 1)
      for (ranks, workers) in [(1, 2), (1, 3), (2, 1), (2, 2), (3, 1), (3, 2), (4, 3), (5, 1)] {
        XCTAssertEqual(
          treeSum(shards: shards, ranks: ranks, workers: workers).map(\.bitPattern), reference.map(\.bitPattern),
          "\(shards) shards on \(ranks) ranks × \(workers) workers")
      }
    }
    // Not a tautology: adding the same slots in another order changes the bits.
    let values: [[Float]] = (0..<8).map { shard in randomFloats(37, seed: UInt64(shard + 1)).map { $0 * 1e3 + 1e-3 } }
    var backwards = [Float](repeating: 0, count: 37)
    for shard in (0..<8).reversed() {
      for i in 0..<37 { backwards[i] += values[shard][i] }
    }
    XCTAssertNotEqual(treeSum(shards: 8, ranks: 1, workers: 1).map(\.bitPattern), backwards.map(\.bitPattern))
  }

  /// Taking turns in slots adds the pairs of the tree over the shards' own values.
  func testTakingTurnsInSlotsGivesTheTreeOfTheShardsValues() {
    for shards in [1, 2, 3, 5, 8, 13, 32] {
      var values = (0..<shards).map { shardValues($0, length: 37) }
      ReductionTree.forEachTreePair(shards: shards) { left, right, _ in
        for i in 0..<37 { values[left][i] += values[right][i] }
      }
      XCTAssertEqual(
        treeSum(shards: shards, ranks: 1, workers: 1).map(\.bitPattern), values[0].map(\.bitPattern), "\(shards) shards"
      )
    }
    XCTAssertEqual(
      ReductionTree.gradientSlotIndices(shards: 8, blocks: 1, localBlocks: 0..<1), [0, 1, 1, 2, 1, 2, 2, 3])
    XCTAssertEqual(
      ReductionTree.gradientSlotIndices(shards: 8, blocks: 4, localBlocks: 2..<3), [0, 1, 2, 3, 4, 5, 6, 7],
      "two shards per block: a pair's second shard takes the block's second slot")
    XCTAssertEqual(
      ReductionTree.gradientSlotIndices(shards: 8, blocks: 2, localBlocks: 1..<2), [0, 1, 2, 3, 4, 5, 5, 6],
      "other blocks keep their own slots")
  }
}
