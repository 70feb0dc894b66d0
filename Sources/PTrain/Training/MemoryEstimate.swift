/// What a training run allocates, by part, in bytes: worked out from the plan and the
/// options before anything is allocated, so that a run too large for the machine is
/// refused in one line instead of dying in the allocator or to the OOM killer. Data held
/// in memory is not counted: it is loaded (and counted by the system) before.
public struct MemoryEstimate: Sendable, Equatable {
  /// The parameters and BatchNorm statistics, and the optimizer's state (Adam's two moments).
  public let parameters: Int
  /// The gradient slots: one parameter-sized buffer per shard of a step.
  public let gradients: Int
  /// The filters the kernels read (Winograd-transformed, flipped, transposed).
  public let preparedWeights: Int
  /// Every worker's activations, their gradients and the kernels' scratch.
  public let replicas: Int

  public var total: Int { parameters + gradients + preparedWeights + replicas }

  /// The memory of training `plan` with `options` on `workers` workers, where a step has
  /// at most `stepImages` images (the batch, or fewer training images). Cost: O(layers).
  public init(plan: ModelPlan, options: TrainingOptions, workers: Int, stepImages: Int) {
    let float = MemoryLayout<Float>.stride
    let shards = Self.shards(options: options, stepImages: stepImages)
    parameters = ((1 + options.optimizer.stateBufferCount) * plan.parameterCount + plan.stateCount) * float
    gradients = shards * plan.parameterCount * float
    var prepared = 0
    let inputGradients = plan.inputGradients(frozen: options.frozen)
    for layer in plan.layers {
      guard let weight = layer.weight, layer.layer.kind is ConvLayer else { continue }
      if let tile = layer.kernel?.winogradOutputTile {
        let transformed = weight.count / 9 * (tile + 2) * (tile + 2)
        prepared += transformed * (inputGradients[layer.index] ? 2 : 1)
      } else if inputGradients[layer.index] {
        prepared += weight.count
      }
    }
    preparedWeights = prepared * float
    let layout = ReplicaLayout(
      plan: plan, slots: Self.replicaSlots(plan: plan, options: options, workers: workers, shards: shards),
      shardImages: options.shardSize, denseImages: Self.blockImages(options: options, workers: workers, shards: shards),
      frozen: options.frozen, fusions: options.fusions,
      winogradTileBudget: winogradTileBudget)
    replicas = workers * layout.floats * float
  }

  /// The shards of a step of at most `stepImages` images.
  static func shards(options: TrainingOptions, stepImages: Int) -> Int {
    (max(min(options.batchSize, stepImages), 1) + options.shardSize - 1) / options.shardSize
  }

  /// The images a replica holds: one shard's without BatchNorm; with it, all of its
  /// worker's block of shards (whose batch statistics it waits for).
  static func replicaSlots(plan: ModelPlan, options: TrainingOptions, workers: Int, shards: Int) -> Int {
    (plan.batchNormLayers.isEmpty ? 1 : max((shards + workers - 1) / workers, 1)) * options.shardSize
  }

  /// The most images of a worker's block of shards, which its dense layers keep for their
  /// weight gradients (`Replica.beginDenseBlock`).
  static func blockImages(options: TrainingOptions, workers: Int, shards: Int) -> Int {
    max((shards + workers - 1) / workers, 1) * options.shardSize
  }

  /// `bytes` for a message: "1.3 GB", "210 MB".
  public static func describe(_ bytes: Int) -> String {
    guard bytes >= 1 << 30 else { return "\(max(bytes >> 20, 1)) MB" }
    let tenths = ((bytes >> 20) * 10 + 512) / 1024  // of a GB, rounded, from whole MB
    return "\(tenths / 10).\(tenths % 10) GB"
  }
}
