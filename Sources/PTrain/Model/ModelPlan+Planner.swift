extension ModelPlan {
  /// Plans layers one after another, each on the output of a layer planned before it:
  /// their shapes, tensors (laid out in planning order) and names.
  struct Planner {
    /// A planned layer's output, as the layers that read it see it.
    struct Output {
      /// The layer (-1: the model's input).
      var node: Int
      var shape: ImageShape
      var isFlat: Bool
      /// The map a flatten below made it from, until a dense layer consumes it.
      var flattenedFrom: ImageShape?
    }

    private(set) var layers: [PlannedLayer] = []
    private var parameterOffset = 0, stateOffset = 0
    /// How many layers of each kind the model has, and how many are planned.
    private let counts: [String: Int]
    private var seen: [String: Int] = [:]

    init(definition: ModelDefinition) {
      var counts: [String: Int] = [:]
      func count(_ layers: [Layer]) {
        for layer in layers {
          counts[layer.word, default: 0] += 1
          if let (body, shortcut) = layer.residualBranches { count(body + shortcut) }
        }
      }
      count(definition.layers)
      self.counts = counts
    }

    /// Plans `layer` on `input` (and, for a residual block's addition, `shortcut`), named
    /// `torchPath` in PyTorch, and returns its output. Cost: O(1) but the kind's planning.
    mutating func add(_ layer: Layer, torchPath: String, after input: Output, adding shortcut: Output? = nil)
      throws -> Output
    {
      let index = layers.count
      let word = layer.word
      seen[word, default: 0] += 1
      // A layer's input gradient is needed when a layer with parameters lies before it.
      var planning = LayerPlanning(
        index: index, torchPath: torchPath, layer: layer, input: input.shape, inputIsFlat: input.isFlat,
        flattenedFrom: input.flattenedFrom, shortcutInput: shortcut.map { ($0.shape, $0.isFlat) },
        needsInputGradient: parameterOffset > 0, parameterOffset: parameterOffset, stateOffset: stateOffset)
      try layer.kind.plan(&planning)
      layers.append(
        PlannedLayer(
          index: index, layer: layer, torchPath: torchPath,
          name: counts[word]! > 1 ? "\(word)\(seen[word]!)" : word, input: input.shape, output: planning.output,
          inputs: [input.node] + (shortcut.map { [$0.node] } ?? []), inputIsFlat: input.isFlat,
          outputIsFlat: planning.outputIsFlat, kernel: planning.kernel, weight: planning.weight, bias: planning.bias,
          runningMean: planning.runningMean, runningVariance: planning.runningVariance, fusesReLU: false,
          flattenedMap: planning.flattenedMap, executedTrainingFlops: planning.executedFlops,
          directTrainingFlops: planning.directFlops))
      (parameterOffset, stateOffset) = (planning.parameterOffset, planning.stateOffset)
      return Output(
        node: index, shape: planning.output, isFlat: planning.outputIsFlat, flattenedFrom: planning.flattenedFrom)
    }
  }
}
