/// A replica's loss and backward passes: shards, the layers' backward kernels, BatchNorm's
/// gradient sums.
extension Replica {
  /// After the forward pass of the image in `slot`, its cross-entropy loss against
  /// `label` with label smoothing `smoothing`; the logits' gradient goes where `backward`
  /// starts. Cost: O(classes).
  package func loss(label: Int, slot: Int = 0, smoothing: Float = 0) -> Float {
    let last = plan.layers.count - 1
    return softmaxCrossEntropy(
      logits: output(last, slot), classes: plan.classes, label: label, gradient: gradient(last, slot),
      smoothing: smoothing)
  }

  /// Starts a shard for the Winograd and dense layers among `layers`: the next image's
  /// weight products replace theirs instead of adding to them, and the dense layers'
  /// kept images start again. With `overwritingDense`, the dense weights' gradients start
  /// from nothing instead of being added to `gradient` (`dW = dYᵀ · X`, the same bits as
  /// adding to zeros), so that a trainer need not clear them. In a dense block
  /// (`beginDenseBlock`) the dense layers keep their images instead. Cost: O(layers).
  package func beginShard(layers: Range<Int>, overwritingDense: Bool = false) {
    for i in layers {
      hasProducts[i] = false
      if !inDenseBlock {
        denseImages[i] = 0
        denseOverwrites[i] = overwritingDense
      }
    }
  }

  /// Ends a shard: adds to `gradient` the Winograd layers' weight gradients among
  /// `layers`, summed over the shard in the Winograd domain, and the dense layers' (see
  /// `flushDense`). Cost: O(weights · 16/9) and 2 · images · weights FLOP.
  package func finishShard(layers: Range<Int>, gradient g: UnsafeMutablePointer<Float>) {
    for i in layers where hasProducts[i] {
      let run = runs[i]
      if run.kind == .winograd4 {
        WinogradF4.addWeightGradient(products: run.weightProducts!, shape: run.conv3x3, weightGradient: g + run.weight)
      } else if run.kind == .winograd5 {
        WinogradF5.addWeightGradient(products: run.weightProducts!, shape: run.conv3x3, weightGradient: g + run.weight)
      } else {
        winogradAddWeightGradient(products: run.weightProducts!, shape: run.conv3x3, weightGradient: g + run.weight)
      }
      hasProducts[i] = false
    }
    guard !inDenseBlock else { return }
    for i in layers where denseImages[i] > 0 { flushDense(i, gradient: g) }
  }

  /// Runs the backward pass of `layers`, from the highest down, for the image in `slot`,
  /// adding parameter gradients to `gradient` (laid out like the parameters). The gradient
  /// of the highest layer's output must be in place (`loss`, or the layers above). Layers
  /// whose work no trainable layer needs are skipped; a BatchNorm needs the batch's sums
  /// set first (`setBatchGradientSums`); its own parameters' gradients are the trainer's.
  package func backward(
    layers: Range<Int>, slot: Int = 0, pass: Pass, gradient g: UnsafeMutablePointer<Float>,
    finishingShard: Bool = false
  ) {
    backward(layers: layers, slots: slot..<(slot + 1), pass: pass, gradient: g, finishingShard: finishingShard)
  }

  /// Runs the backward pass of `layers` for the images in `group`, layer by layer, as
  /// `forward(layers:slots:pass:)` runs the forward pass. Every parameter's gradient adds
  /// the images in order, so the bits are those of one image at a time. With
  /// `finishingShard`, `group` holds the shard's last images (no `backward` for these
  /// layers follows before `finishShard`), so F(4×4) and F(5×5) layers add their weight
  /// gradient as their last images' products are made (`finishWeightGradient`), with the
  /// bits that `finishShard` would give.
  /// With `addingGradientSumsOf`, then adds each image's sums at that BatchNorm (the one
  /// below `layers`) to `sums`, as `addBatchNormGradientSums` would image after image; an
  /// F(4×4) or F(5×5) convolution that applies it adds them as it writes its input gradient
  /// (`BatchNormGradientRows`), taking the gradient through its ReLU on the way.
  package func backward(
    layers: Range<Int>, slots group: Range<Int>, pass: Pass, gradient g: UnsafeMutablePointer<Float>,
    finishingShard: Bool = false, addingGradientSumsOf target: (bn: Int, sums: UnsafeMutablePointer<Float>)? = nil
  ) {
    precondition(group.count <= groupImages && group.lowerBound % groupImages + group.count <= groupImages)
    precondition(target.map { $0.bn == layers.lowerBound - 1 && runs[$0.bn].kind == .batchNorm } ?? true)
    if group.count > 1 && !groupsPay(layers) {
      for slot in group {
        backward(
          layers: layers, slots: slot..<(slot + 1), pass: pass.at(slot - group.lowerBound), gradient: g,
          finishingShard: finishingShard && slot == group.upperBound - 1, addingGradientSumsOf: target)
      }
      return
    }
    var sumsAdded = false
    // The layers above a BatchNorm read its output, held for one group: make it again.
    if layers.lowerBound > 0, outputs[layers.lowerBound - 1].copies < slots,
      runs[layers.lowerBound - 1].kind == .batchNorm,
      !appliedAbove[layers.lowerBound - 1], poolAbove[layers.lowerBound - 1] == nil
    {
      forward(layers: (layers.lowerBound - 1)..<layers.lowerBound, slots: group, pass: pass)
    }
    for i in layers.reversed() {
      let run = runs[i]
      guard run.trains || run.needsInputGradient else { continue }
      switch run.kind {
      case .winograd4:
        let added = backwardLargeWinograd(
          WinogradF4.self, layer: i, group: group, pass: pass, gradient: g, finishingShard: finishingShard, sums: target
        )
        sumsAdded = sumsAdded || added
      case .winograd5:
        let added = backwardLargeWinograd(
          WinogradF5.self, layer: i, group: group, pass: pass, gradient: g, finishingShard: finishingShard, sums: target
        )
        sumsAdded = sumsAdded || added
      case .winograd:
        let biasGradient = run.trains && run.bias >= 0 ? g + run.bias : nil
        for part in parts(of: group, layer: i) {
          let dy = UnsafePointer(gradient(i, part.lowerBound))
          if run.trains {
            if heldInput[i] != part {  // the forward pass's tiles belong to other images by now
              let (source, normalizing) = winogradInput(layer: i)
              winogradTransformInput(
                output(source, part.lowerBound), images: part.count, tiling: .forward(run.conv3x3),
                padded: run.paddedInput!, into: run.inputTiles!, normalizing: normalizing)
              heldInput[i] = part
            }
            winogradConv3x3WeightGradient(
              inputTiles: run.inputTiles!, outputGradient: dy, images: part.count, shape: run.conv3x3,
              gradientTiles: run.gradientTiles!, products: run.weightProducts!, accumulate: hasProducts[i],
              biasGradient: biasGradient)
            hasProducts[i] = true
          }
          if run.needsInputGradient {
            winogradConv3x3InputGradient(
              outputGradient: dy, images: part.count, shape: run.conv3x3, flippedWeights: run.winogradFlipped!,
              paddedGradient: run.paddedGradient!, gradientTiles: run.gradientTiles!, products: run.products!,
              inputGradient: inputGradient(i, part.lowerBound))
          }
        }
      case .dense:
        denseBackward(group: group, layer: i, pass: pass, gradient: g)
      case .batchNorm where gradientMadeBelow[i]:
        break  // the convolution below makes its input gradient (`batchNormAbove`)
      case .relu where sumsAdded && i == layers.lowerBound && run.fusedIntoBelow:
        break  // the convolution above took the gradient through it (`BatchNormGradientRows`)
      default:
        for slot in group {
          backwardOneImage(layer: i, slot: slot, pass: pass.at(slot - group.lowerBound), gradient: g)
        }
      }
      if run.needsInputGradient { mergeGradients(after: i, group: group) }
    }
    if let target, !sumsAdded {
      for slot in group { addBatchNormGradientSums(layer: target.bn, slot: slot, into: target.sums) }
    }
  }

  /// Runs F(m×m, 3×3) layer `i` backward on the images of `group`, as `backward` does:
  /// its weight and bias gradients into `gradient` (straight through a block for the
  /// shard's last images, with `finishingShard`), and its input gradient, through the
  /// BatchNorm below when `sums` names it. With `batchNormAbove`, it makes the gradient at
  /// its output from that BatchNorm's. Returns whether it added the sums.
  func backwardLargeWinograd<Scheme: WinogradScheme>(
    _ scheme: Scheme.Type, layer i: Int, group: Range<Int>, pass: Pass, gradient g: UnsafeMutablePointer<Float>,
    finishingShard: Bool, sums target: (bn: Int, sums: UnsafeMutablePointer<Float>)?
  ) -> Bool {
    guard let bn = batchNormAbove[i] else {
      return backwardLargeWinograd(
        scheme, layer: i, group: group, gradient: g, finishingShard: finishingShard, sums: target, made: nil)
    }
    let above = runs[bn]
    return withBatchNormGradientTerms(
      channels: above.channels, mean: above.batchMean!, inverseDeviation: above.batchInverseDeviation!,
      gamma: pass.parameters + above.weight, sums: above.gradientSums!, batchCount: batchCounts[bn]
    ) { terms in
      backwardLargeWinograd(
        scheme, layer: i, group: group, gradient: g, finishingShard: finishingShard, sums: target,
        made: (bn, terms))
    }
  }

  /// `backwardLargeWinograd` with the gradient at the layer's output made from BatchNorm
  /// `made.bn`'s with its terms, or stored.
  private func backwardLargeWinograd<Scheme: WinogradScheme>(
    _ scheme: Scheme.Type, layer i: Int, group: Range<Int>, gradient g: UnsafeMutablePointer<Float>,
    finishingShard: Bool, sums target: (bn: Int, sums: UnsafeMutablePointer<Float>)?,
    made: (bn: Int, terms: BatchNormGradientTerms)?
  ) -> Bool {
    let run = runs[i]
    let biasGradient = run.trains && run.bias >= 0 ? g + run.bias : nil
    var sumsAdded = false
    for part in parts(of: group, layer: i) {
      let dy = UnsafePointer(gradient(i, part.lowerBound))
      let source = made.map {
        BatchNormInputGradient(
          outputGradient: gradient($0.bn, part.lowerBound), input: output(i, part.lowerBound), terms: $0.terms)
      }
      // The input gradient first: with a made gradient, it fills the padded copies that
      // the weight gradient reads.
      if run.needsInputGradient {
        let rows = target.flatMap {
          $0.bn == normalizedBelow[i] && fusions.contains(.batchNormSumsInWinograd)
            ? gradientRows(bn: $0.bn, slot: part.lowerBound, into: $0.sums) : nil
        }
        Scheme.conv3x3InputGradient(
          outputGradient: dy, images: part.count, shape: run.conv3x3, flippedWeights: run.winogradFlipped!,
          paddedGradient: run.paddedGradient!, gradientTiles: run.gradientTiles!, products: run.products!,
          inputGradient: inputGradient(i, part.lowerBound), throughBatchNorm: rows, made: source)
        sumsAdded = sumsAdded || rows != nil
      }
      if run.trains {
        if heldInput[i] != part {  // the forward pass's tiles belong to other images by now
          let (source, normalizing) = winogradInput(layer: i)
          Scheme.transformInput(
            output(source, part.lowerBound), images: part.count, tiling: Scheme.forwardTiling(run.conv3x3),
            padded: run.paddedInput!, into: run.inputTiles!, normalizing: normalizing)
          heldInput[i] = part
        }
        let finishes = finishingShard && part.upperBound == group.upperBound
        Scheme.conv3x3WeightGradient(
          inputTiles: run.inputTiles!, outputGradient: dy, images: part.count, shape: run.conv3x3,
          gradientTiles: run.gradientTiles!, products: run.weightProducts!, accumulate: hasProducts[i],
          biasGradient: biasGradient, finishing: finishes ? (run.weightBlock!, g + run.weight) : nil,
          madeIn: source == nil ? nil : UnsafePointer(run.paddedGradient!))
        hasProducts[i] = !finishes  // finished products are in the gradient already
      }
    }
    return sumsAdded
  }

  /// The work on the rows of the input gradient that an F(4×4) or F(5×5) convolution writes at
  /// BatchNorm `bn`'s output, which it applies, for the images from `slot` on.
  func gradientRows(bn: Int, slot: Int, into sums: UnsafeMutablePointer<Float>) -> BatchNormGradientRows {
    let run = runs[bn]
    return BatchNormGradientRows(
      input: output(run.input, slot),
      relu: run.fusesReLU ? (UnsafePointer(run.batchScale!), UnsafePointer(run.batchOffset!)) : nil,
      mean: run.batchMean!, inverseDeviation: run.batchInverseDeviation!, sums: sums)
  }

  /// The backward pass of layer `i`, not a Winograd one, for the image in `slot`.
  func backwardOneImage(layer i: Int, slot: Int, pass: Pass, gradient g: UnsafeMutablePointer<Float>) {
    let p = pass.parameters
    let run = runs[i]
    let dy = UnsafePointer(gradient(i, slot))
    let dx: UnsafeMutablePointer<Float>? = run.needsInputGradient ? inputGradient(i, slot) : nil
    let x = UnsafePointer(output(run.input, slot))
    let weightGradient = run.trains && run.weight >= 0 ? g + run.weight : nil
    let biasGradient = run.trains && run.bias >= 0 ? g + run.bias : nil
    let holdsInput = heldInput[i] == slot..<(slot + 1)
    switch run.kind {
    case .winograd, .winograd4, .winograd5:
      preconditionFailure("Winograd layers run a group at a time")
    case .directOneChannel:
      // Planned only where no input gradient is needed; its copy may be another image's.
      let (source, shape) = directInput(run, x, refill: !holdsInput)
      heldInput[i] = slot..<(slot + 1)
      conv3x3OneChannelWeightGradient(
        input: source, outputGradient: dy, shape: shape, weightGradient: weightGradient!,
        biasGradient: biasGradient)
    case .im2colGemm:
      if let weightGradient {
        if !holdsInput {
          im2col(x, shape: run.conv, columns: run.columns!)
          heldInput[i] = slot..<(slot + 1)
        }
        convWeightGradient(
          columns: run.columns!, outputGradient: dy, shape: run.conv, weightGradient: weightGradient,
          biasGradient: biasGradient)
      }
      if let dx {
        convInputGradient(
          outputGradient: dy, shape: run.conv, transposedWeights: run.transposed!, columns: run.columns!,
          inputGradient: dx)
        heldInput[i] = nil  // the columns were its scratch
      }
    case .batchNorm:
      guard let dx else { return }
      if let pool = poolAbove[i] {
        pooledGradient(bn: i, pool: pool, slot: slot).inputGradient(
          mean: run.batchMean!, inverseDeviation: run.batchInverseDeviation!, gamma: p + run.weight,
          sums: run.gradientSums!, batchCount: batchCounts[i], into: dx)
        return
      }
      batchNormInputGradient(
        outputGradient: dy, input: x, pixels: run.pixels, channels: run.channels, mean: run.batchMean!,
        inverseDeviation: run.batchInverseDeviation!, gamma: p + run.weight, sums: run.gradientSums!,
        batchCount: batchCounts[i], inputGradient: dx)
    case .relu:
      // Max-pool's backward above takes the ReLU's gradient itself (`throughReLU`).
      if run.fusedIntoBelow, appliedAbove[run.input] {  // its output was never stored
        let bn = runs[run.input]
        reluBackwardThroughBatchNorm(
          passOn(dy, to: dx!, count: run.outputCount), input: output(bn.input, slot), pixels: bn.pixels,
          channels: bn.channels, scale: bn.batchScale!, offset: bn.batchOffset!)
      } else if !run.maxPoolAbove {
        reluBackwardInPlace(
          passOn(dy, to: dx!, count: run.outputCount), output: output(i, slot), count: run.outputCount)
      }
    case .maxPool:
      guard pooledBelow[i] == nil else { return }  // the BatchNorm below routes its gradient (`poolAbove`)
      let (source, normalizing) = poolInput(layer: i, slot: slot)
      maxPoolBackward(
        input: source, output: output(i, slot), outputGradient: dy, shape: run.pool, throughReLU: run.reluBelow,
        inputGradient: dx!, normalizing: normalizing)
    case .avgPool:
      avgPoolBackward(outputGradient: dy, shape: run.pool, inputGradient: dx!)
    case .globalAvgPool:
      globalAvgPoolBackward(outputGradient: dy, pixels: run.pixels, channels: run.channels, inputGradient: dx!)
    case .flatten:
      _ = passOn(dy, to: dx!, count: run.outputCount)
    case .dense:
      denseBackward(group: slot..<(slot + 1), layer: i, pass: pass, gradient: g)
    case .dropout:
      let dx = passOn(dy, to: dx!, count: run.outputCount)
      if pass.training && run.rate > 0 {
        dropoutBackward(dx, count: run.outputCount, rate: run.rate, key: dropoutKey(pass, layer: i))
      }
    case .add:
      _ = passOn(dy, to: dx!, count: run.outputCount)
      if run.shortcut >= 0 { _ = passOn(dy, to: inputGradient(i, slot, input: 1), count: run.outputCount) }
    }
  }

  /// `dy` where `dx` is to hold it: nothing when they share a buffer, else a copy. A layer
  /// that passes its gradient on (a ReLU, flatten, dropout, a residual addition) works in
  /// place when it is the only reader of its input, and on this copy when it is one of
  /// several. Returns `dx`. Cost: `count` copies at most.
  @inline(__always)
  func passOn(_ dy: UnsafePointer<Float>, to dx: UnsafeMutablePointer<Float>, count: Int) -> UnsafeMutablePointer<Float>
  {
    if UnsafePointer(dx) != dy { dx.update(from: dy, count: count) }
    return dx
  }

  /// After layer `i`'s backward for the images in `group`, where `i` is the first of the
  /// layers that read a layer's output: adds the other readers' gradients (`merges`) to
  /// the last one's, in the readers' order, so that the layer's gradient is whole.
  /// Cost: one add per value per extra reader.
  func mergeGradients(after i: Int, group: Range<Int>) {
    for merge in merges[i] {
      let count = plan.layers[merge.layer].output.count
      for slot in group {
        let target = gradient(merge.layer, slot)
        for branch in merge.branches {
          addInPlace(target, arena.base + branch.offset + slot % branch.copies * branch.stride, count: count)
        }
      }
    }
  }

  /// Adds the image in `slot`'s `Σ dy` and `Σ dy · x̂` at BatchNorm `layer` (its output's
  /// gradient, already through the ReLU above) to `sums` (2 · channels Floats).
  package func addBatchNormGradientSums(layer i: Int, slot: Int, into sums: UnsafeMutablePointer<Float>) {
    let run = runs[i]
    if let pool = poolAbove[i] {
      pooledGradient(bn: i, pool: pool, slot: slot).addSums(
        mean: run.batchMean!, inverseDeviation: run.batchInverseDeviation!, into: sums)
      return
    }
    batchNormAddGradientSums(
      outputGradient: gradient(i, slot), input: output(run.input, slot), pixels: run.pixels, channels: run.channels,
      mean: run.batchMean!, inverseDeviation: run.batchInverseDeviation!, sums: sums)
  }

  /// BatchNorm `bn`, which max-pool `pool` applies, with that pool, for `slot` (see `poolAbove`).
  func pooledGradient(bn: Int, pool: Int, slot: Int) -> PooledBatchNormGradient {
    let shape = runs[pool].pool
    return PooledBatchNormGradient(
      input: output(runs[bn].input, slot), output: output(pool, slot), outputGradient: gradient(pool, slot),
      height: shape.height, width: shape.width, channels: shape.channels, throughReLU: runs[pool].reluBelow,
      normalizing: folded(bn))
  }

  /// Sets BatchNorm `layer`'s batch sums of `Σ dy` and `Σ dy · x̂` over `count` values
  /// per channel, for its input gradient.
  package func setBatchGradientSums(layer i: Int, sums: UnsafePointer<Float>, count: Int) {
    runs[i].gradientSums!.update(from: sums, count: 2 * runs[i].channels)
    batchCounts[i] = count
  }
}
