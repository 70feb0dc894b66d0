/// Which layers' output gradients share a buffer, and which buffers must outlive a group
/// of images: worked out from the plan for `ReplicaLayout`.
///
/// ReLU, flatten and dropout work on their gradient in place, so the layer they read
/// shares it when they are its only reader; so does the body's last layer of a residual
/// block with the block's addition, which passes its gradient through. A layer read by
/// several (a residual block's input) gets its own buffer.
///
/// The backward pass runs segment by segment, the top one and then one per BatchNorm down
/// (`Trainer`), each segment for all of a worker's images before the next. A buffer
/// written in one segment and read in another is kept per image; the others hold one
/// group of images at a time.
struct GradientBuffers {
  /// Per layer: its gradient's group (layers of a group share one buffer).
  let group: [Int]
  /// Per group: the most values per image of its members.
  let widest: [Int]
  /// Per group: whether its buffer is written and read in different segments.
  let spansSegments: [Bool]
  private let batchNorms: [Int]
  private let layerCount: Int

  init(plan: ModelPlan, poolAbove: [Int?]) {
    let layers = plan.layers
    layerCount = layers.count
    batchNorms = plan.batchNormLayers
    var group = [Int](repeating: -1, count: layers.count)
    var groups = 0
    func newGroup() -> Int {
      defer { groups += 1 }
      return groups
    }
    for i in layers.indices.reversed() {
      if group[i] < 0 { group[i] = newGroup() }
      for (k, j) in layers[i].inputs.enumerated() where j >= 0 && group[j] < 0 {
        let shares: Bool
        switch layers[i].layer.kind {
        case is ReLULayer, is FlattenLayer, is DropoutLayer: shares = plan.consumers[j] == [i]
        case is ResidualLayer where k == 0: shares = plan.consumers[j] == [i]
        case is ResidualLayer: shares = Self.shortcutShares(addition: i, in: plan)
        default: shares = false
        }
        group[j] = shares ? group[i] : newGroup()
      }
    }
    self.group = group
    var widest = [Int](repeating: 0, count: groups)
    var levels = [Set<Int>](repeating: [], count: groups)
    for layer in layers {
      let g = group[layer.index]
      widest[g] = max(widest[g], layer.output.count)
      levels[g].insert(Self.level(layer.index, batchNorms: batchNorms, count: layers.count))
      for reader in plan.consumers[layer.index] {
        levels[g].insert(Self.level(reader, batchNorms: batchNorms, count: layers.count))
      }
    }
    self.widest = widest
    var spans = levels.map { $0.count > 1 }
    for case let pool? in poolAbove { spans[group[pool]] = true }  // read by the BatchNorm below
    spansSegments = spans
  }

  /// Whether a residual block's addition `i` can pass its gradient to the shortcut's
  /// output (or the block's input) in its own buffer, as it does to the body's last layer,
  /// without a copy: the addition is that layer's last reader (the others' gradients are
  /// added to it after, `Replica.merges`), and no layer changes the buffer in place before
  /// both have read it. The one of the two whose backward runs first (the higher) must not
  /// work in place; the block's input, read last, is only read after the merge.
  static func shortcutShares(addition i: Int, in plan: ModelPlan) -> Bool {
    let (body, shortcut) = (plan.layers[i].inputs[0], plan.layers[i].inputs[1])
    guard shortcut >= 0, plan.consumers[shortcut].last == i else { return false }
    let first = plan.layers[max(body, shortcut)].layer.kind
    return !(first is ReLULayer || first is FlattenLayer || first is DropoutLayer)
  }

  /// The backward segment of layer `i`: the first BatchNorm at or above it, or the layer
  /// count for the top segment.
  func level(_ i: Int) -> Int { Self.level(i, batchNorms: batchNorms, count: layerCount) }

  static func level(_ i: Int, batchNorms: [Int], count: Int) -> Int { batchNorms.first { $0 >= i } ?? count }
}

extension ReplicaLayout {
  /// The gradient buffers of a model without residual blocks: the gradients at BatchNorm
  /// outputs are needed per image, but only two BatchNorms' at a time (the segment's top
  /// and bottom), so alternate BatchNorms share two buffers. A BatchNorm that a max-pool
  /// applies needs the pool's output gradient instead (see `poolAbove`), a quarter of the
  /// size, kept per image on its own, as are the groups in `perSlotGroups`. Every other
  /// group holds one group of images.
  static func sequentialGradients(
    plan: ModelPlan, groups group: [Int], poolAbove: [Int?], perSlotGroups: Set<Int>, perSlot: (Int) -> Buffer,
    perGroup: (Int) -> Buffer
  ) -> [Buffer] {
    let layers = plan.layers
    var groupBuffers: [Int: Buffer] = [:]
    for parity in 0..<2 {
      let members = plan.batchNormLayers.enumerated().filter { $0.offset % 2 == parity && poolAbove[$0.element] == nil }
        .map(\.element)
      guard let widest = members.map({ layers[$0].output.count }).max() else { continue }
      let shared = perSlot(widest)
      for member in members { groupBuffers[group[member]] = shared }
    }
    for case let pool? in poolAbove { groupBuffers[group[pool]] = perSlot(layers[pool].output.count) }
    return layers.map { layer in
      // Each layer's images lie one after another at its own size, as the kernels that
      // run several at once expect (a shared buffer is as large as its widest member's).
      if let buffer = groupBuffers[group[layer.index]] {
        return Buffer(offset: buffer.offset, stride: layer.output.count, copies: buffer.copies)
      }
      let held = perSlotGroups.contains(group[layer.index])
      let buffer = held ? perSlot(layer.output.count) : perGroup(layer.output.count)
      groupBuffers[group[layer.index]] = buffer
      return buffer
    }
  }
}
