/// A replica's forward passes: loading images, the layers' forward kernels, BatchNorm's
/// batch statistics.
extension Replica {
  /// What a pass needs besides the buffers: the parameters, the BatchNorm running
  /// statistics (for evaluation), whether it trains (batch statistics, dropout), and the
  /// key of this image's dropout masks.
  package struct Pass {
    package var parameters: UnsafePointer<Float>
    package var state: UnsafePointer<Float>?
    package var training: Bool
    /// Dropout's masks are drawn from (seed, global step, position in the batch, layer).
    package var seed: UInt64 = 0, step: Int = 0, position: Int = 0

    package init(parameters: UnsafePointer<Float>, state: UnsafePointer<Float>? = nil, training: Bool) {
      self.parameters = parameters
      self.state = state
      self.training = training
    }

    /// The pass of the image `offset` places after this one in the batch.
    func at(_ offset: Int) -> Pass {
      var pass = self
      pass.position += offset
      return pass
    }
  }

  /// Standardises one image's bytes into `slot`'s input, cropped, flipped and erased as
  /// `draw` says (see `Augmentation`). Cost: one multiply-add per value.
  package func load(
    image: UnsafePointer<UInt8>, slot: Int = 0, augmentation: Augmentation = .none,
    draw: Augmentation.Draw = Augmentation.Draw()
  ) {
    let shape = plan.input
    let target = output(-1, slot)
    let scale = normalizationScale
    let shift = normalizationShift
    guard !augmentation.isNone else {
      normalizePixels(
        image, pixels: shape.height * shape.width, channels: shape.channels, scale: scale, shift: shift, into: target)
      return
    }
    let (h, w, c) = (shape.height, shape.width, shape.channels)
    let pad = augmentation.padding
    for y in 0..<h {
      let sourceY = y + draw.dy - pad
      for x in 0..<w {
        let sourceX = (draw.flip ? w - 1 - x : x) + draw.dx - pad
        let inside = sourceY >= 0 && sourceY < h && sourceX >= 0 && sourceX < w
        for channel in 0..<c {
          let byte = inside ? image[(sourceY * w + sourceX) * c + channel] : 0
          target[(y * w + x) * c + channel] = Float(byte) * scale[channel] + shift[channel]
        }
      }
    }
    if let erased = draw.erasure {
      for y in erased.top..<(erased.top + erased.height) {
        (target + (y * w + erased.left) * c).update(repeating: 0, count: erased.width * c)
      }
    }
  }

  /// Runs the forward pass of `layers` on the image in `slot`. A BatchNorm layer in
  /// training needs its batch statistics set first (`setBatchStatistics`).
  package func forward(layers: Range<Int>, slot: Int = 0, pass: Pass) {
    forward(layers: layers, slots: slot..<(slot + 1), pass: pass)
  }

  /// Runs the forward pass of `layers` on the images in `group` (at most `groupImages`
  /// consecutive slots, not wrapping past a multiple of `groupImages`), layer by layer;
  /// `pass.position` is the first image's position in the batch, the next ones follow it.
  /// Each image gets the bits that a pass of its own gives.
  package func forward(layers: Range<Int>, slots group: Range<Int>, pass: Pass) {
    forward(layers: layers, slots: group, pass: pass, addingInputSumsOf: nil)
  }

  /// `forward(layers:slots:pass:)` up to BatchNorm `bn` (`layers.upperBound`), then adds
  /// each image's sums of its input to `sums`, as `addBatchNormInputSums` would image
  /// after image; an F(4×4) or F(5×5) convolution below adds them as it writes its output.
  package func forward(
    layers: Range<Int>, slots group: Range<Int>, pass: Pass, addingInputSumsOf bn: Int,
    state: UnsafePointer<Float>, into sums: UnsafeMutablePointer<Double>
  ) {
    precondition(layers.upperBound == bn && runs[bn].kind == .batchNorm)
    forward(
      layers: layers, slots: group, pass: pass,
      addingInputSumsOf: (bn: bn, sums: BatchNormInputSums(shift: state + runs[bn].runningMean, sums: sums)))
  }

  func forward(
    layers: Range<Int>, slots group: Range<Int>, pass: Pass,
    addingInputSumsOf adding: (bn: Int, sums: BatchNormInputSums)?
  ) {
    precondition(group.count <= groupImages && group.lowerBound % groupImages + group.count <= groupImages)
    if group.count > 1 && !groupsPay(layers) {
      for slot in group {
        forward(
          layers: layers, slots: slot..<(slot + 1), pass: pass.at(slot - group.lowerBound), addingInputSumsOf: adding)
      }
      return
    }
    let p = pass.parameters
    var sumsAdded = false
    for i in layers {
      let run = runs[i]
      let bias = run.bias >= 0 ? p + run.bias : nil
      switch run.kind {
      case .winograd4, .winograd5:
        let addingSums = adding.flatMap {
          runs[$0.bn].input == i && fusions.contains(.batchNormSumsInWinograd) ? $0.sums : nil
        }
        if run.kind == .winograd5 {
          forwardLargeWinograd(WinogradF5.self, layer: i, group: group, bias: bias, addingSums: addingSums)
        } else {
          forwardLargeWinograd(WinogradF4.self, layer: i, group: group, bias: bias, addingSums: addingSums)
        }
        sumsAdded = sumsAdded || addingSums != nil
      case .winograd:
        let (source, normalizing) = winogradInput(layer: i)
        for part in parts(of: group, layer: i) {
          winogradConv3x3Forward(
            input: output(source, part.lowerBound), images: part.count, shape: run.conv3x3,
            transformedWeights: run.winogradForward!, bias: bias, relu: run.fusesReLU, paddedInput: run.paddedInput!,
            inputTiles: run.inputTiles!, products: run.products!, output: output(i, part.lowerBound),
            normalizingInput: normalizing)
          heldInput[i] = part
        }
      case .dense:
        denseForward(
          input: output(run.input, group.lowerBound), images: group.count, inputs: run.inputCount,
          weights: p + run.weight, bias: bias, outputs: run.outputCount, relu: run.fusesReLU,
          output: output(i, group.lowerBound))
      default:
        for slot in group {
          forwardOneImage(layer: i, slot: slot, pass: pass.at(slot - group.lowerBound))
        }
      }
    }
    if let adding, !sumsAdded {
      let run = runs[adding.bn]
      for slot in group {
        batchNormAddInputSums(
          output(run.input, slot), pixels: run.pixels, channels: run.channels, shift: adding.sums.shift,
          sums: adding.sums.sums)
      }
    }
  }

  /// Whether `layers` hold a Winograd layer whose GEMMs cover several images, or a dense
  /// layer (whose weights one pass reads for up to four images). Where none does, a group
  /// runs image by image through all of them, so that each image's activations stay in
  /// cache from layer to layer (on large maps that was measured a few percent faster than
  /// layer by layer).
  func groupsPay(_ layers: Range<Int>) -> Bool {
    layers.contains { winogradImages[$0] > 1 || runs[$0].kind == .dense }
  }

  /// Runs F(m×m, 3×3) layer `i` forward on the images of `group`, in parts that its
  /// scratch holds, adding the BatchNorm input sums of the layer above to `addingSums`.
  func forwardLargeWinograd<Scheme: WinogradScheme>(
    _ scheme: Scheme.Type, layer i: Int, group: Range<Int>, bias: UnsafePointer<Float>?,
    addingSums: BatchNormInputSums?
  ) {
    let run = runs[i]
    let (source, normalizing) = winogradInput(layer: i)
    for part in parts(of: group, layer: i) {
      Scheme.conv3x3Forward(
        input: output(source, part.lowerBound), images: part.count, shape: run.conv3x3,
        transformedWeights: run.winogradForward!, bias: bias, relu: run.fusesReLU, paddedInput: run.paddedInput!,
        inputTiles: run.inputTiles!, products: run.products!, output: output(i, part.lowerBound),
        normalizingInput: normalizing, addingSums: addingSums)
      heldInput[i] = part
    }
  }

  /// What Winograd layer `i` reads: the layer whose output it takes, and the BatchNorm it
  /// applies on the way in (see `normalizedBelow`).
  func winogradInput(layer i: Int) -> (source: Int, normalizing: FoldedBatchNorm?) {
    guard let bn = normalizedBelow[i] else { return (runs[i].input, nil) }
    return (runs[bn].input, folded(bn))
  }

  /// What max-pool layer `i` reads for `slot`: its input, or the input of the BatchNorm it
  /// applies on the way in (see `pooledBelow`) and that BatchNorm.
  func poolInput(layer i: Int, slot: Int) -> (UnsafePointer<Float>, FoldedBatchNorm?) {
    guard let bn = pooledBelow[i] else { return (UnsafePointer(output(runs[i].input, slot)), nil) }
    return (UnsafePointer(output(runs[bn].input, slot)), folded(bn))
  }

  /// BatchNorm layer `bn`'s current scale and offset (and ReLU), for the layer that applies it.
  func folded(_ bn: Int) -> FoldedBatchNorm {
    let run = runs[bn]
    return FoldedBatchNorm(
      scale: UnsafePointer(run.batchScale!), offset: UnsafePointer(run.batchOffset!), relu: run.fusesReLU)
  }

  /// `group` cut into runs of at most `winogradImages[layer]` slots: the images one
  /// Winograd GEMM covers.
  func parts(of group: Range<Int>, layer: Int) -> SlotRuns {
    SlotRuns(start: group.lowerBound, end: group.upperBound, size: winogradImages[layer])
  }

  /// The forward pass of layer `i`, not a Winograd one, on the image in `slot`.
  func forwardOneImage(layer i: Int, slot: Int, pass: Pass) {
    let p = pass.parameters
    let run = runs[i]
    let x = UnsafePointer(output(run.input, slot))
    let y = output(i, slot)
    let bias = run.bias >= 0 ? p + run.bias : nil
    switch run.kind {
    case .winograd, .winograd4, .winograd5:
      preconditionFailure("Winograd layers run a group at a time")
    case .directOneChannel:
      let (source, shape) = directInput(run, x, refill: true)
      heldInput[i] = slot..<(slot + 1)
      conv3x3OneChannelForward(
        input: source, shape: shape, weights: p + run.weight, bias: bias, relu: run.fusesReLU, output: y)
    case .im2colGemm:
      convForward(
        input: x, shape: run.conv, weights: p + run.weight, bias: bias, relu: run.fusesReLU, columns: run.columns!,
        output: y)
      heldInput[i] = slot..<(slot + 1)
    case .batchNorm:
      if !pass.training { setRunningStatistics(run, pass: pass) }
      guard !appliedAbove[i] && poolAbove[i] == nil else { return }  // the layer above applies it
      batchNormApply(
        x, pixels: run.pixels, channels: run.channels, scale: run.batchScale!, offset: run.batchOffset!,
        relu: run.fusesReLU, output: y)
    case .relu:
      if !run.fusedIntoBelow {
        for k in 0..<run.outputCount { y[k] = max(x[k], 0) }
      }
    case .maxPool:
      let (source, normalizing) = poolInput(layer: i, slot: slot)
      maxPoolForward(source, shape: run.pool, output: y, normalizing: normalizing)
    case .avgPool:
      avgPoolForward(x, shape: run.pool, output: y)
    case .globalAvgPool:
      globalAvgPoolForward(x, pixels: run.pixels, channels: run.channels, output: y)
    case .flatten:
      break
    case .dense:
      denseForward(
        input: x, inputs: run.inputCount, weights: p + run.weight, bias: bias, outputs: run.outputCount,
        relu: run.fusesReLU, output: y)
    case .dropout:
      if pass.training && run.rate > 0 {
        dropoutForward(x, count: run.outputCount, rate: run.rate, key: dropoutKey(pass, layer: i), output: y)
      } else {
        y.update(from: x, count: run.outputCount)
      }
    case .add:
      let shortcut = UnsafePointer(output(run.shortcut, slot))
      if let bn = addedBelow[i] {
        let norm = runs[bn]
        batchNormApplyAdding(
          output(norm.input, slot), shortcut, pixels: norm.pixels, channels: norm.channels, scale: norm.batchScale!,
          offset: norm.batchOffset!, relu: run.fusesReLU, output: y)
      } else {
        addForward(x, shortcut, count: run.outputCount, relu: run.fusesReLU, output: y)
      }
    }
  }

  /// The input of a direct one-channel convolution: the layer's input itself, or for
  /// "same" padding a zero-bordered copy (made anew when `refill`), with the valid
  /// convolution over it.
  func directInput(_ run: LayerRun, _ x: UnsafePointer<Float>, refill: Bool)
    -> (UnsafePointer<Float>, Conv3x3Shape)
  {
    let shape = run.conv3x3
    guard shape.padding > 0, let padded = run.paddedInput else { return (x, shape) }
    let width = shape.width + 2
    if refill {
      for row in 0..<shape.height {
        (padded + (row + 1) * width + 1).update(from: x + row * shape.width, count: shape.width)
      }
    }
    return (
      UnsafePointer(padded),
      Conv3x3Shape(height: shape.height + 2, width: width, inChannels: 1, outChannels: shape.outChannels)
    )
  }

  func dropoutKey(_ pass: Pass, layer: Int) -> UInt64 {
    PTrain.dropoutKey(seed: pass.seed, step: pass.step, position: pass.position, layer: layer)
  }

  /// Pixels and channels of a BatchNorm's input: a map's, or a vector's values as channels.
  func batchNormGeometry(_ layer: ModelPlan.PlannedLayer) -> (pixels: Int, channels: Int) {
    layer.inputIsFlat ? (1, layer.input.count) : (layer.input.height * layer.input.width, layer.input.channels)
  }

  /// Sets a BatchNorm's folded scale and offset from its running statistics.
  func setRunningStatistics(_ run: LayerRun, pass: Pass) {
    let state = pass.state!
    let gamma = pass.parameters + run.weight
    let beta = pass.parameters + run.bias
    for c in 0..<run.channels {
      let inverse = 1 / (state[run.runningVariance + c] + ModelPlan.batchNormEpsilon).squareRoot()
      let scale = gamma[c] * inverse
      run.batchScale![c] = scale
      run.batchOffset![c] = beta[c] - state[run.runningMean + c] * scale
    }
  }

  /// Adds the image in `slot`'s sums of BatchNorm `layer`'s input to `sums` (2 · channels
  /// Doubles), shifted by the running mean (see `batchNormAddInputSums`).
  package func addBatchNormInputSums(
    layer i: Int, slot: Int, state: UnsafePointer<Float>, into sums: UnsafeMutablePointer<Double>
  ) {
    let run = runs[i]
    batchNormAddInputSums(
      output(run.input, slot), pixels: run.pixels, channels: run.channels, shift: state + run.runningMean, sums: sums)
  }

  /// Sets BatchNorm `layer`'s batch statistics from the batch's shifted sums over `count`
  /// values per channel: the mean and biased variance normalise, and the unbiased
  /// variance is kept for the running statistics (`batchStatistics`). Cost: O(channels).
  package func setBatchStatistics(
    layer i: Int, sums: UnsafePointer<Double>, count: Int, parameters: UnsafePointer<Float>,
    state: UnsafePointer<Float>
  ) {
    let run = runs[i]
    let gamma = parameters + run.weight
    let beta = parameters + run.bias
    let n = Double(count)
    for c in 0..<run.channels {
      let shift = Double(state[run.runningMean + c])
      let meanOffset = sums[c] / n
      let variance = max(sums[run.channels + c] / n - meanOffset * meanOffset, 0)
      let mean = Float(shift + meanOffset)
      let inverse = Float(1 / (variance + Double(ModelPlan.batchNormEpsilon)).squareRoot())
      run.batchMean![c] = mean
      run.batchInverseDeviation![c] = inverse
      run.batchScale![c] = gamma[c] * inverse
      run.batchOffset![c] = beta[c] - mean * gamma[c] * inverse
      run.batchVariance![c] = Float(count > 1 ? variance * n / (n - 1) : variance)
    }
  }

  /// BatchNorm `layer`'s last batch mean and unbiased variance, for the running statistics.
  package func batchStatistics(layer i: Int) -> (mean: UnsafePointer<Float>, variance: UnsafePointer<Float>) {
    (UnsafePointer(runs[i].batchMean!), UnsafePointer(runs[i].batchVariance!))
  }
}
