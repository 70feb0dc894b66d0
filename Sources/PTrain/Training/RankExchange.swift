/// What the ranks of a multi-process run send each other during a step, so that each
/// ends it with the parameters a single process would have, bit for bit.
///
/// The step's shards are cut into ranks × workers blocks, rank after rank, and so are the
/// trainable parameters. Inside a rank, each worker adds the reduction tree's pairs that
/// lie in its block, then the rank's workers add the pairs inside the rank's block that
/// span them. Then every rank sends each other rank, for that rank's slice of the
/// parameters, the slots its block still holds (the roots of the subtrees it summed,
/// usually one or two); each rank adds the pairs that span ranks, over its own slice, in
/// the tree's order, and applies the optimizer there; finally every rank gets every
/// updated slice, with the optimizer's state. BatchNorm's per-shard sums and the shards'
/// losses travel the same way, whole, so every rank adds them in shard order. No sum
/// depends on which rank or worker computed what, so any processes × threads split gives
/// the same bits.
///
/// Used by worker 0 of each rank only, between the step's barriers. `@unchecked Sendable`
/// because it writes the trainer's buffers through pointers, which the step's barriers
/// order against the other workers' reads.
final class RankExchange: @unchecked Sendable {
  let processes: ProcessGroup
  /// Worker blocks in the whole job: ranks × workers per rank.
  let blocks: Int
  /// Per rank: the trainable parameter ranges that its workers reduce and update.
  let rankRanges: [[Range<Int>]]
  let parameters: UnsafeMutablePointer<Float>
  /// The optimizer's state buffers (Adam's moments, SGD's momentum), shared with the parameters.
  let optimizerState: [UnsafeMutablePointer<Float>]
  /// Floats of each rank's slice.
  let sliceLengths: [Int]

  init(trainer: Trainer, blocks: Int) {
    processes = trainer.processes
    self.blocks = blocks
    let workers = blocks / processes.size
    rankRanges = (0..<processes.size).map { rank in
      (0..<workers).flatMap { trainer.ranges(ofWorker: rank * workers + $0, workers: blocks) }
    }
    sliceLengths = rankRanges.map { $0.reduce(0) { $0 + $1.count } }
    parameters = trainer.parameters.base
    optimizerState = trainer.optimizer.state.map(\.base)
  }

  /// The shards rank `rank` computes: a contiguous block, in rank order.
  func shards(ofRank rank: Int, of shards: Int) -> Range<Int> {
    evenShare(of: shards, part: rank, parts: processes.size)
  }

  /// Gives every rank the rows `shard · stride ..< (shard + 1) · stride` of `base` of
  /// every other rank's shards. Cost: all shards' rows over the network.
  func shareShardRows(_ base: UnsafeMutablePointer<Float>, stride: Int, shards: Int) {
    processes.allgather(base, counts: rowCounts(stride: stride, shards: shards), of: .float)
  }

  /// `shareShardRows` for Doubles (BatchNorm's forward sums).
  func shareShardRows(_ base: UnsafeMutablePointer<Double>, stride: Int, shards: Int) {
    processes.allgather(base, counts: rowCounts(stride: stride, shards: shards), of: .double)
  }

  private func rowCounts(stride: Int, shards: Int) -> [Int] {
    (0..<processes.size).map { self.shards(ofRank: $0, of: shards).count * stride }
  }

  /// Per rank, the shards of its block whose slots still hold a partial sum after each
  /// rank added the pairs inside its own block: those the pairs that span ranks read.
  /// Computed once per shard count (a short last batch has fewer).
  func roots(shards: Int) -> [[Int]] {
    if let known = rootsByShardCount[shards] { return known }
    let ranks = processes.size
    var consumed = Set<Int>()
    ReductionTree.forEachTreePair(shards: shards) { left, right, last in
      if ReductionTree.owner(ofShard: left, workers: ranks, shards: shards)
        == ReductionTree.owner(ofShard: last, workers: ranks, shards: shards)
      {
        consumed.insert(right)
      }
    }
    let roots = (0..<ranks).map { self.shards(ofRank: $0, of: shards).filter { !consumed.contains($0) } }
    rootsByShardCount[shards] = roots
    return roots
  }
  private var rootsByShardCount: [Int: [[Int]]] = [:]
  /// The buffers of `shareGradients` and `shareUpdatedSlices`, kept between steps.
  private var sendBuffer: [Float] = []
  private var receiveBuffer: [Float] = []
  private var sliceBuffer: [Float] = []

  /// Sends each rank this rank's root slots over that rank's slice, and writes what the
  /// others sent into the same slots here. Cost: roots × slice Floats per rank pair.
  func shareGradients(_ slots: [UnsafeMutablePointer<Float>], shards: Int) {
    let ranks = processes.size
    let rank = processes.rank
    let roots = self.roots(shards: shards)
    sendBuffer.removeAll(keepingCapacity: true)
    var sendCounts = [Int](repeating: 0, count: ranks)
    var receiveCounts = [Int](repeating: 0, count: ranks)
    for other in 0..<ranks where other != rank {
      for shard in roots[rank] {
        for range in rankRanges[other] {
          sendBuffer.append(contentsOf: UnsafeBufferPointer(start: slots[shard] + range.lowerBound, count: range.count))
        }
      }
      sendCounts[other] = roots[rank].count * sliceLengths[other]
      receiveCounts[other] = roots[other].count * sliceLengths[rank]
    }
    processes.exchange(sendBuffer, sendCounts: sendCounts, into: &receiveBuffer, receiveCounts: receiveCounts)
    receiveBuffer.withUnsafeBufferPointer { received in
      var offset = 0
      for other in 0..<ranks where other != rank {
        for shard in roots[other] {
          for range in rankRanges[rank] {
            (slots[shard] + range.lowerBound).update(from: received.baseAddress! + offset, count: range.count)
            offset += range.count
          }
        }
      }
    }
  }

  /// Gives every rank every rank's updated slice of the parameters and the optimizer's
  /// state (Adam's moments). Cost: three times the trainable parameters over the network
  /// with Adam.
  func shareUpdatedSlices() {
    let ranks = processes.size
    let arrays = [parameters] + optimizerState
    let counts = sliceLengths.map { arrays.count * $0 }
    if sliceBuffer.count != counts.reduce(0, +) { sliceBuffer = [Float](repeating: 0, count: counts.reduce(0, +)) }
    sliceBuffer.withUnsafeMutableBufferPointer { buffer in
      let starts = counts.indices.map { counts[..<$0].reduce(0, +) }
      var offset = starts[processes.rank]
      for array in arrays {
        for range in rankRanges[processes.rank] {
          (buffer.baseAddress! + offset).update(from: array + range.lowerBound, count: range.count)
          offset += range.count
        }
      }
      processes.allgather(buffer.baseAddress!, counts: counts, of: .float)
      for other in 0..<ranks where other != processes.rank {
        var offset = starts[other]
        for array in arrays {
          for range in rankRanges[other] {
            (array + range.lowerBound).update(from: buffer.baseAddress! + offset, count: range.count)
            offset += range.count
          }
        }
      }
    }
  }

  /// The first of the ranks' `value`s that is not negative, in rank order, else -1.
  func firstOfRanks(_ value: Int) -> Int {
    Int(processes.allgather([Int64(value)]).first { $0 >= 0 } ?? -1)
  }
}
