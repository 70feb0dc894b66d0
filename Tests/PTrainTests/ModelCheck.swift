import XCTest

@_spi(Kernels) @testable import PTrain

/// The check every model test runs: a model's evaluation logits against PyTorch's
/// semantics (`TorchModel`), its batch gradient against finite differences of them, and
/// every fused path against the plain operations.
extension XCTestCase {
  /// Checks `text`'s model: its evaluation logits against `TorchModel`'s from the PyTorch
  /// layout, and its training gradient (over a batch of `batch` images, with BatchNorm's
  /// batch statistics and dropout's masks) against central finite differences of
  /// `TorchModel`'s loss, for the largest and some random entries of every tensor.
  ///
  /// Every fused path is checked against the plain operations: the gradient and logits
  /// with no fusion (`Fusions`), and with every rule but one, are bit for bit those of
  /// every rule. With `finiteDifferences: false` only that comparison and the logits run.
  func check(
    _ text: String, batch: Int = 1, shardImages: Int = 4, expect kernels: [ModelPlan.Kernel]? = nil,
    finiteDifferences: Bool = true, file: StaticString = #filePath, line: UInt = #line
  ) throws {
    let model = try ModelDefinition(parsing: text)
    let plan = try ModelPlan(model)
    if let kernels {
      XCTAssertEqual(
        plan.layers.compactMap { $0.kernel == .gemv ? nil : $0.kernel }, kernels, text, file: file, line: line)
    }
    var generator = SeededGenerator(seed: 17)
    var parameters = plan.initialParameters(using: &generator)
    for i in parameters.indices { parameters[i] += generator.nextUnitFloat() * 0.2 - 0.1 }
    var statistics = plan.initialState
    for tensor in plan.stateTensors {
      for i in tensor.range {
        statistics[i] = tensor.name.hasSuffix("var") ? 0.5 + generator.nextUnitFloat() : generator.nextUnitFloat() - 0.5
      }
    }
    let shape = model.input
    let images = (0..<batch).map { _ in (0..<shape.count).map { _ in UInt8(generator.nextIndex(below: 256)) } }
    let labels = (0..<batch).map { _ in generator.nextIndex(below: plan.classes) }
    let normalization = Normalization(
      mean: [Float](repeating: 0.4, count: shape.channels),
      standardDeviation: [Float](repeating: 0.3, count: shape.channels))
    let torch = TorchModel(plan: plan, parameters: parameters, statistics: statistics)
    let maps = images.map { TorchModel.input($0, shape: shape, normalization: normalization) }

    // Evaluation: the logits agree.
    let replica = Replica(plan: plan, slots: batch, shardImages: shardImages, normalization: normalization)
    let expected = torch.forward(maps, training: false)
    parameters.withUnsafeBufferPointer { p in
      replica.prepare(parameters: p.baseAddress!)
      statistics.withUnsafeBufferPointer { s in
        for (image, reference) in zip(images, expected) {
          let logits = image.withUnsafeBufferPointer {
            Array(replica.forward(image: $0.baseAddress!, parameters: p.baseAddress!, state: s.baseAddress!))
          }
          assertClose(
            logits, reference.map(Float.init), tolerance: 1e-4, "\(text): evaluation logits", file: file, line: line)
        }
      }
    }

    // Training: the gradient agrees with finite differences of the loss.
    let dropout = { (layer: Int, image: Int) -> [Double] in
      let planned = plan.layers[layer]
      guard let rate = (planned.layer.kind as? DropoutLayer)?.rate else { return [] }
      let ones = [Float](repeating: 1, count: planned.output.count)
      var factors = ones
      dropoutForward(
        ones, count: ones.count, rate: rate, key: dropoutKey(seed: 5, step: 0, position: image, layer: layer),
        output: &factors)
      // The engine's mask is over H,W,C values; PyTorch's tensor is C,H,W, also for the
      // vector of a flattened map (until a dense layer).
      var s = planned.input
      if planned.inputIsFlat {
        let source = plan.layers[..<layer].last { $0.layer == .flatten && !$0.inputIsFlat }
        let dense = plan.layers[..<layer].last { $0.layer.kind is DenseLayer }
        guard let source, (dense?.index ?? -1) < source.index else { return factors.map(Double.init) }
        s = source.input
      }
      var chw = [Double](repeating: 0, count: factors.count)
      for y in 0..<s.height {
        for x in 0..<s.width {
          for c in 0..<s.channels {
            chw[(c * s.height + y) * s.width + x] = Double(factors[(y * s.width + x) * s.channels + c])
          }
        }
      }
      return chw
    }
    let gradient = batchGradient(
      replica: replica, images: images, labels: labels, parameters: parameters, statistics: statistics)
    // Passes over several images at once (Winograd's GEMMs over all their tiles) give
    // the bits of one image at a time.
    let grouped = batchGradient(
      replica: replica, images: images, labels: labels, parameters: parameters, statistics: statistics,
      groupSize: replica.groupImages)
    XCTAssertEqual(grouped, gradient, "\(text): \(replica.groupImages) images at a time", file: file, line: line)
    // The same with each Winograd GEMM on one image of the group (as on large maps).
    let single = Replica(
      plan: plan, slots: batch, shardImages: shardImages, normalization: normalization, winogradTileBudget: 1)
    parameters.withUnsafeBufferPointer { single.prepare(parameters: $0.baseAddress!) }
    let oneByOne = batchGradient(
      replica: single, images: images, labels: labels, parameters: parameters, statistics: statistics,
      groupSize: replica.groupImages)
    XCTAssertEqual(oneByOne, gradient, "\(text): Winograd GEMMs image by image", file: file, line: line)
    // The plain operations, and every fused path but one, give the fused path's bits.
    let variants =
      [("no fusion", Fusions())] + Fusions.named.map { ("all but \($0.name)", Fusions.all.subtracting($0.fusion)) }
    for (name, fusions) in variants {
      let other = Replica(
        plan: plan, slots: batch, shardImages: shardImages, normalization: normalization, fusions: fusions)
      parameters.withUnsafeBufferPointer { other.prepare(parameters: $0.baseAddress!) }
      for groupSize in Set([1, other.groupImages]) {
        let otherGradient = batchGradient(
          replica: other, images: images, labels: labels, parameters: parameters, statistics: statistics,
          groupSize: groupSize)
        XCTAssertEqual(otherGradient, gradient, "\(text): \(name), groups of \(groupSize)", file: file, line: line)
      }
      parameters.withUnsafeBufferPointer { p in
        statistics.withUnsafeBufferPointer { s in
          for image in images {
            let fused = image.withUnsafeBufferPointer {
              Array(replica.forward(image: $0.baseAddress!, parameters: p.baseAddress!, state: s.baseAddress!))
            }
            let plain = image.withUnsafeBufferPointer {
              Array(other.forward(image: $0.baseAddress!, parameters: p.baseAddress!, state: s.baseAddress!))
            }
            XCTAssertEqual(plain, fused, "\(text): \(name), evaluation logits", file: file, line: line)
          }
        }
      }
    }
    guard finiteDifferences else { return }
    let torchGradient = gradient.withUnsafeBufferPointer {
      Dictionary(uniqueKeysWithValues: plan.torchTensors($0.baseAddress!).map { ($0.name, $0.values) })
    }
    for tensor in plan.tensors {
      let analytic = torchGradient[tensor.name]!
      let largest = analytic.indices.sorted { abs(analytic[$0]) > abs(analytic[$1]) }.prefix(3)
      let random = (0..<3).map { _ in generator.nextIndex(below: analytic.count) }
      for index in Set(largest + random) {
        let epsilon = 1e-6  // the reference is in Double; a small step rarely crosses a max-pool's tie
        var plus = torch
        var minus = torch
        plus.state[tensor.name]![index] += epsilon
        minus.state[tensor.name]![index] -= epsilon
        let numeric =
          (plus.loss(maps, labels: labels, training: true, dropout: dropout)
            - minus.loss(maps, labels: labels, training: true, dropout: dropout)) / (2 * epsilon)
        XCTAssertEqual(
          Double(analytic[index]), numeric, accuracy: 1e-3 + 1e-2 * abs(numeric), "\(text): \(tensor.name)[\(index)]",
          file: file, line: line)
      }
    }
  }

  /// The summed gradient of a batch in training mode, the way a trainer's worker computes
  /// it for one shard of all the images: the layers below each BatchNorm for every image,
  /// the batch's statistics, and so on up; then the backward pass down the same segments.
  /// One image at a time, the BatchNorms' input sums take a pass of their own; in groups,
  /// the layers below add them as they write (`forward(layers:…addingInputSumsOf:…)`).
  func batchGradient(
    replica: Replica, images: [[UInt8]], labels: [Int], parameters: [Float], statistics: [Float], groupSize: Int = 1
  ) -> [Float] {
    let plan = replica.plan
    let groups = stride(from: 0, to: images.count, by: groupSize).map { $0..<min($0 + groupSize, images.count) }
    let layers = plan.layers.count
    var gradient = [Float](repeating: 0, count: plan.parameterCount)
    parameters.withUnsafeBufferPointer { p in
      statistics.withUnsafeBufferPointer { s in
        gradient.withUnsafeMutableBufferPointer { g in
          let g = g.baseAddress!
          func pass(_ image: Int) -> Replica.Pass {
            var pass = Replica.Pass(parameters: p.baseAddress!, state: s.baseAddress!, training: true)
            pass.seed = 5
            pass.position = image
            return pass
          }
          func load(_ image: Int) {
            images[image].withUnsafeBufferPointer { replica.load(image: $0.baseAddress!, slot: image) }
          }
          var start = 0
          for bn in plan.batchNormLayers {
            let (pixels, channels) = replica.batchNormGeometry(plan.layers[bn])
            var sums = [Double](repeating: 0, count: 2 * channels)
            for group in groups {
              if start == 0 { group.forEach(load) }
              if groupSize == 1 {  // the reference: the sums in a pass of their own
                replica.forward(layers: start..<bn, slots: group, pass: pass(group.lowerBound))
                for image in group {
                  replica.addBatchNormInputSums(layer: bn, slot: image, state: s.baseAddress!, into: &sums)
                }
              } else {  // an F(4×4) convolution below adds them as it writes its output
                replica.forward(
                  layers: start..<bn, slots: group, pass: pass(group.lowerBound), addingInputSumsOf: bn,
                  state: s.baseAddress!, into: &sums)
              }
            }
            replica.setBatchStatistics(
              layer: bn, sums: sums, count: images.count * pixels, parameters: p.baseAddress!, state: s.baseAddress!)
            start = bn
          }
          var gradientSums: [Int: [Float]] = [:]
          /// The backward pass of `layers` for `group`, then the gradient sums at `bn`, the
          /// BatchNorm below them (if any): in a pass of their own one image at a time, as
          /// the layers above write them in groups (`backward(…addingGradientSumsOf:)`).
          func backward(_ layers: Range<Int>, _ group: Range<Int>, sumsAt bn: Int?) {
            guard let bn else {
              replica.backward(layers: layers, slots: group, pass: pass(group.lowerBound), gradient: g)
              return
            }
            let channels = replica.batchNormGeometry(plan.layers[bn]).channels
            var sums = gradientSums[bn] ?? [Float](repeating: 0, count: 2 * channels)
            if groupSize == 1 {
              replica.backward(layers: layers, slots: group, pass: pass(group.lowerBound), gradient: g)
              for image in group { replica.addBatchNormGradientSums(layer: bn, slot: image, into: &sums) }
            } else {
              sums.withUnsafeMutableBufferPointer { sums in
                replica.backward(
                  layers: layers, slots: group, pass: pass(group.lowerBound), gradient: g,
                  addingGradientSumsOf: (bn, sums.baseAddress!))
              }
            }
            gradientSums[bn] = sums
          }
          let top = (plan.batchNormLayers.last.map { $0 + 1 } ?? 0)..<layers
          replica.beginShard(layers: top)
          for group in groups {
            if start == 0 { group.forEach(load) }
            replica.forward(layers: start..<layers, slots: group, pass: pass(group.lowerBound))
            for image in group { _ = replica.loss(label: labels[image], slot: image) }
            backward(top, group, sumsAt: plan.batchNormLayers.last)
          }
          replica.finishShard(layers: top, gradient: g)
          for (level, bn) in plan.batchNormLayers.enumerated().reversed() {
            let layer = plan.layers[bn]
            let channels = replica.batchNormGeometry(layer).channels
            let sums = gradientSums[bn]!
            for c in 0..<channels {
              g[layer.weight!.offset + c] += sums[channels + c]
              g[layer.bias!.offset + c] += sums[c]
            }
            replica.setBatchGradientSums(
              layer: bn, sums: sums, count: images.count * replica.batchNormGeometry(layer).pixels)
            let low = level > 0 ? plan.batchNormLayers[level - 1] + 1 : 0
            replica.beginShard(layers: low..<(bn + 1))
            for group in groups {
              backward(low..<(bn + 1), group, sumsAt: level > 0 ? plan.batchNormLayers[level - 1] : nil)
            }
            replica.finishShard(layers: low..<(bn + 1), gradient: g)
          }
        }
      }
    }
    return gradient
  }
}
