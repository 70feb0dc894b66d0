/// The fused paths a replica may take, each a named rule over two or three adjacent
/// layers. A fused path does the work of its layers' plain operations in fewer passes
/// over memory, with the same bits; `Replica(fusions: [])` runs every layer's plain
/// operation, the reference each fused path is tested against, for every pair of
/// adjacent layer kinds.
package struct Fusions: OptionSet, Sendable, Hashable {
  package let rawValue: Int
  package init(rawValue: Int) { self.rawValue = rawValue }

  /// A convolution, dense layer or BatchNorm applies the ReLU directly above it as it
  /// stores its output; the ReLU shares that buffer and does nothing forward.
  package static let reluOnStore = Fusions(rawValue: 1 << 0)
  /// A max-pool whose input is a ReLU's output takes the ReLU's gradient as it routes
  /// its own; the ReLU does nothing backward.
  package static let reluGradientInMaxPool = Fusions(rawValue: 1 << 1)
  /// A Winograd convolution applies the BatchNorm (and its stored-on ReLU) directly below
  /// it as it copies its input, so that BatchNorm never stores its output.
  package static let batchNormInConvolution = Fusions(rawValue: 1 << 2)
  /// A 2×2 max-pool applies the BatchNorm (and its ReLU) directly below it as it loads
  /// each window, and that BatchNorm's backward routes the pool's gradient itself. Taken
  /// only with `reluGradientInMaxPool` where a ReLU lies between.
  package static let batchNormInMaxPool = Fusions(rawValue: 1 << 3)
  /// An F(4×4) or F(5×5) convolution adds the BatchNorm sums of the layer it feeds (its
  /// input sums, forward) or of the BatchNorm it applies (its gradient sums, backward) as
  /// its output transform writes each row of tiles.
  package static let batchNormSumsInWinograd = Fusions(rawValue: 1 << 4)

  /// A residual block's addition applies the BatchNorm that ends the block's body (when
  /// it is that BatchNorm's only reader) as it adds the shortcut, so that BatchNorm never
  /// stores its output.
  package static let batchNormInAddition = Fusions(rawValue: 1 << 5)

  /// A dense layer below a BatchNorm, whose images a worker holds for its whole block of
  /// shards, runs its forward and its input gradient over the block at once instead of
  /// shard by shard, reading its weights from memory once per block (`Replica.blockDense`).
  package static let denseOverBlock = Fusions(rawValue: 1 << 6)

  /// An F(4×4) or F(5×5) convolution without bias, read only by the BatchNorm above it,
  /// makes that BatchNorm's input gradient as its backward reads it (the gradient at its
  /// own output), so that the BatchNorm's backward stores nothing (`BatchNormInputGradient`).
  package static let batchNormGradientInConvolution = Fusions(rawValue: 1 << 7)

  /// Every rule, each with its name, for tests and messages.
  package static let named: [(name: String, fusion: Fusions)] = [
    ("reluOnStore", .reluOnStore), ("reluGradientInMaxPool", .reluGradientInMaxPool),
    ("batchNormInConvolution", .batchNormInConvolution), ("batchNormInMaxPool", .batchNormInMaxPool),
    ("batchNormSumsInWinograd", .batchNormSumsInWinograd), ("batchNormInAddition", .batchNormInAddition),
    ("denseOverBlock", .denseOverBlock), ("batchNormGradientInConvolution", .batchNormGradientInConvolution),
  ]

  /// Every rule: what training runs.
  package static let all = Fusions(named.map(\.fusion))
}
