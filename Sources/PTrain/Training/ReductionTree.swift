/// The fixed pairwise tree in which a step's shard gradients are summed: at stride 1,
/// slot 0 += slot 1, slot 2 += slot 3, …; at stride 2, slot 0 += slot 2, …; until slot 0
/// holds the sum. Each worker computes one contiguous block of shards, so every pair whose
/// subtree lies inside a block is added by that worker as soon as its last shard is done,
/// while the slots are still in its cache (`foldLocalPairs`); the reduce phase adds the
/// pairs that span blocks (`reduceCrossWorkerPairs`), and under MPI the pairs inside a
/// rank first (`reducePairsInsideRank`). Every pair adds the same operands in the same
/// order whoever adds it and whenever, so the sum's bits depend only on the shard count.
package enum ReductionTree {
  /// Which of the `slots` each shard's gradient uses in a step of `shards` shards cut
  /// into `blocks` blocks (`evenShare`), of which `localBlocks` run here. A local block's
  /// shards take turns in the block's first slots: a shard takes the lowest slot that no
  /// unfinished sum holds, and frees its partner's when `foldLocalPairs` adds it, so a
  /// block of n shards touches O(log n) slots (⌊log₂ n⌋ + 1 when it starts a subtree of
  /// the tree), and their sums stay in cache.
  /// Other ranks' shards keep their own slots, where `RankExchange` puts their sums. Every
  /// shard's sum is added in the same pairs as before, so the bits do not change.
  /// Cost: O(shards · log shards).
  package static func gradientSlotIndices(shards: Int, blocks: Int, localBlocks: Range<Int>) -> [Int] {
    var indices = Array(0..<shards)
    for part in localBlocks {
      let block = evenShare(of: shards, part: part, parts: blocks)
      var taken = [Bool](repeating: false, count: block.count)
      for shard in block {
        let turn = taken.firstIndex(of: false)!
        taken[turn] = true
        indices[shard] = block.lowerBound + turn
        forEachLocalPair(after: shard, block: block, shards: shards) { _, right in
          taken[indices[right] - block.lowerBound] = false
        }
      }
    }
    return indices
  }

  /// Calls `body(left, right)` for every tree pair whose subtree ends with shard `shard`
  /// and lies inside `block`, lowest level first: the pairs `foldLocalPairs` adds.
  package static func forEachLocalPair(
    after shard: Int, block: Range<Int>, shards: Int, _ body: (_ left: Int, _ right: Int) -> Void
  ) {
    var stride = 1
    while stride < shards {
      let left = shard / (2 * stride) * (2 * stride)
      guard shard + 1 == min(left + 2 * stride, shards), left >= block.lowerBound else { return }
      if left + stride < shards { body(left, left + stride) }
      stride *= 2
    }
  }

  /// The pairs `foldLocalPairs` adds over `block`, in its order, as a program for a stack
  /// (`denseTreeWeightGradient`): `shard - block.lowerBound` pushes that shard's sum, `-1`
  /// replaces the top two with their sum. `roots` gets the first shard of each subtree
  /// left on the stack at the end, bottom first: the sums the reduce phase adds, which
  /// live in those shards' slots. Both arrays are cleared first and keep their capacity.
  /// Cost: O(block.count · log shards).
  package static func localFoldProgram(block: Range<Int>, shards: Int, program: inout [Int], roots: inout [Int]) {
    program.removeAll(keepingCapacity: true)
    roots.removeAll(keepingCapacity: true)
    for shard in block {
      program.append(shard - block.lowerBound)
      roots.append(shard)
      forEachLocalPair(after: shard, block: block, shards: shards) { left, right in
        precondition(roots.last == right, "ReductionTree: a local pair's right subtree is not on top")
        program.append(-1)
        roots.removeLast()
        precondition(roots.last == left, "ReductionTree: a local pair's left subtree is not below its right")
      }
    }
  }

  /// The worker whose block (`evenShare`) holds shard `shard`.
  package static func owner(ofShard shard: Int, workers: Int, shards: Int) -> Int {
    ((shard + 1) * workers - 1) / shards
  }

  /// After shard `shard` of `block` is done, adds every tree pair whose subtree ends with
  /// that shard and lies inside the block, over `ranges` of the slots.
  /// Cost: O(parameters) per pair added.
  package static func foldLocalPairs(
    after shard: Int, block: Range<Int>, shards: Int, slots: [UnsafeMutablePointer<Float>], ranges: [Range<Int>]
  ) {
    forEachLocalPair(after: shard, block: block, shards: shards) { left, right in
      for range in ranges {
        addInPlace(slots[left] + range.lowerBound, slots[right] + range.lowerBound, count: range.count)
      }
    }
  }

  /// Calls `body(left, right, last)` for every pair of the tree, level by level, in the
  /// order they must be added: `slot[left] += slot[right]`, where `left ... last` are the
  /// shards of the pair's subtree. Cost: O(shards) calls.
  package static func forEachTreePair(shards: Int, _ body: (_ left: Int, _ right: Int, _ last: Int) -> Void) {
    var stride = 1
    while stride < shards {
      for left in Swift.stride(from: 0, to: shards - stride, by: 2 * stride) {
        body(left, left + stride, min(left + 2 * stride, shards) - 1)
      }
      stride *= 2
    }
  }

  /// Adds, over `range`, the tree pairs whose subtrees span two workers' blocks, level by
  /// level, leaving the whole sum in slot 0. Cost: O(range.count) per pair.
  package static func reduceCrossWorkerPairs(
    _ slots: [UnsafeMutablePointer<Float>], shards: Int, workers: Int, range: Range<Int>
  ) {
    forEachTreePair(shards: shards) { left, right, last in
      // A pair inside one block was added by that worker during compute.
      guard
        owner(ofShard: left, workers: workers, shards: shards) != owner(ofShard: last, workers: workers, shards: shards)
      else { return }
      addInPlace(slots[left] + range.lowerBound, slots[right] + range.lowerBound, count: range.count)
    }
  }

  /// Adds, over `range`, the tree pairs whose subtrees lie inside rank `rank`'s block (of
  /// `ranks`) but span two of the `blocks` worker blocks, level by level. Under MPI these
  /// are added before the ranks exchange partial sums, so that each rank sends one per
  /// subtree of its block. Cost: O(range.count) per pair.
  package static func reducePairsInsideRank(
    _ rank: Int, ranks: Int, _ slots: [UnsafeMutablePointer<Float>], shards: Int, blocks: Int, range: Range<Int>
  ) {
    forEachTreePair(shards: shards) { left, right, last in
      guard owner(ofShard: left, workers: ranks, shards: shards) == rank,
        owner(ofShard: last, workers: ranks, shards: shards) == rank,
        owner(ofShard: left, workers: blocks, shards: shards) != owner(ofShard: last, workers: blocks, shards: shards)
      else { return }
      addInPlace(slots[left] + range.lowerBound, slots[right] + range.lowerBound, count: range.count)
    }
  }
}
