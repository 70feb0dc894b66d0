import Foundation
import XCTest

@testable import PTrain

/// Models as data: the model text, shape inference, and every layer's forward and
/// backward pass against PyTorch's semantics (`TorchModel`) and finite differences.
final class ModelTests: XCTestCase {
  // MARK: - The model text

  func testModelTextRoundTripsExactly() throws {
    for (name, text) in ModelDefinition.builtIn {
      let model = try ModelDefinition(named: name)
      XCTAssertEqual(model.text, text, name)
      XCTAssertEqual(try ModelDefinition(parsing: model.text), model, name)
      XCTAssertEqual(model.builtInName, name)
    }
    let text =
      "input 30x20x3, conv 24 5x5 stride 2 same nobias, batchnorm, relu, avgpool 3 stride 1, conv 16 1x1, "
      + "maxpool 2, dropout 0.1, globalavgpool, flatten, dense 12 nobias, batchnorm, relu, dropout 0.375, dense 4"
    let model = try ModelDefinition(parsing: text)
    XCTAssertEqual(model.text, text)
    XCTAssertEqual(try ModelDefinition(parsing: model.text), model)
    XCTAssertNil(model.builtInName)
    XCTAssertEqual(
      try ModelDefinition(
        parsing: "  CONV 8 3X3 ,relu,flatten,   dense 2", input: ImageShape(height: 5, width: 5, channels: 1)
      ).text,
      "input 5x5x1, conv 8 3x3, relu, flatten, dense 2")
    let api = try ModelDefinition(
      input: ImageShape(height: 30, width: 20, channels: 3),
      layers: [
        .conv(24, kernel: 5, stride: 2, padding: .same, bias: false), .batchNorm, .relu, .avgPool(3, stride: 1),
        .conv(16, kernel: 1), .maxPool(2), .dropout(0.1), .globalAvgPool, .flatten, .dense(12, bias: false),
        .batchNorm, .relu, .dropout(0.375), .dense(4),
      ])
    XCTAssertEqual(api, model, "the Swift API and the text give the same model")
  }

  /// A mistake in the text names its position (from 1) and what was expected.
  func testModelTextErrorsNamePositionAndExpectation() {
    let shape = ImageShape(height: 28, width: 28, channels: 1)
    let cases: [(String, String)] = [
      ("conv 32 3x3 same, relu, bogus 3", "position 25: expected a layer (conv, batchnorm"),
      ("conv x 3x3", "position 6: expected the number of filters (an integer from 1 to 4096), found \"x\""),
      ("conv 32 4x4", "position 9: expected an odd kernel size"),
      ("conv 32 3x5", "position 9: expected the kernel size as KxK"),
      ("maxpool 2 stride", "position 17: expected the stride (an integer from 1 to 3), found the end"),
      ("conv 8 3x3 relu", "position 12: expected a comma or the end, found \"relu\""),
      ("flatten, dense 10,", "position 19: expected a layer"),
      ("flatten, dropout 1.5, dense 10", "position 18: expected the dropout rate"),
      ("input 28x28, flatten, dense 10", "position 7: expected the input shape as HxWxC"),
    ]
    for (text, fragment) in cases {
      XCTAssertThrowsError(try ModelDefinition(parsing: text, input: shape), text) {
        XCTAssertTrue("\($0)".hasPrefix("model text, position"), "\($0)")
        XCTAssertTrue("\($0)".contains(fragment), "'\($0)' lacks '\(fragment)'")
      }
    }
    XCTAssertThrowsError(try ModelDefinition(parsing: "flatten, dense 10")) {
      XCTAssertTrue("\($0)".contains("no input shape"), "\($0)")
    }
  }

  /// A layer that does not fit its input is named with its index, its text and the input.
  func testLayersThatDoNotFitTheirInputAreRefused() {
    let cases: [(String, String)] = [
      (
        "input 5x5x1, maxpool 2, maxpool 2, maxpool 2, flatten, dense 2",
        "layer 2 (maxpool 2) would pool the map below 1x1, on its input 1x1x1"
      ),
      (
        "input 8x8x1, conv 4 3x3, dense 10",
        "layer 1 (dense 10) needs a flat input; put flatten before it, on its input 6x6x4"
      ),
      ("input 4x4x1, conv 4 7x7, flatten, dense 2", "layer 0 (conv 4 7x7) has a 7x7 kernel larger than the map"),
      ("input 8x8x1, flatten, conv 4 3x3, dense 2", "layer 1 (conv 4 3x3) needs a map, not a flat vector"),
      ("input 8x8x1, conv 4 3x3, relu", "the model must end in a dense layer"),
      ("input 8x8x1, flatten, dense 1", "a model needs 2 to 4096 classes"),
    ]
    for (text, fragment) in cases {
      XCTAssertThrowsError(try ModelDefinition(parsing: text), text) {
        XCTAssertTrue("\($0)".contains(fragment), "'\($0)' lacks '\(fragment)'")
      }
    }
  }

  /// The plan names tensors as PyTorch's nn.Sequential does, and picks kernels by shape.
  func testPlanNamesTensorsAndChoosesKernels() throws {
    let plan = try ModelPlan(try ModelDefinition(named: "fashion-cnn"))
    XCTAssertEqual(plan.tensors.map(\.name).prefix(4), ["0.weight", "1.weight", "1.bias", "3.weight"])
    XCTAssertEqual(plan.stateTensors.map(\.name).prefix(2), ["1.running_mean", "1.running_var"])
    XCTAssertEqual(plan.layers[0].kernel, .directOneChannel)
    XCTAssertEqual(plan.layers[3].kernel, .winograd4, "28x28")
    XCTAssertEqual(plan.layers[8].kernel, .winograd5, "14x14")
    XCTAssertEqual(plan.layers[17].kernel, .gemv)
    XCTAssertEqual(plan.layers[18].torchModule, "BatchNorm1d(128)")
    XCTAssertEqual(plan.batchNormLayers, [1, 4, 9, 12, 18])
    let cifar = try ModelPlan(try ModelDefinition(named: "cifar-cnn"))
    XCTAssertEqual(cifar.layers[0].kernel, .im2colGemm, "3 input channels")
    let seed = try ModelPlan(.mnistCNN)
    XCTAssertEqual(seed.trainingFlopsPerImage, 14_256_384)
    XCTAssertEqual(seed.executedTrainingFlopsPerImage, 5_888_256)
    XCTAssertEqual(
      seed.layers.map(\.name), ["conv1", "relu1", "maxpool1", "conv2", "relu2", "maxpool2", "flatten", "dense"])
  }

  // MARK: - Every layer against PyTorch's semantics

  /// Convolutions of every kernel the plan picks: im2col+GEMM (odd and even maps, strides 1
  /// and 2, "same" and "valid", 1×1, output counts that are not multiples of 16), Winograd
  /// (F(2×2), F(4×4) and F(5×5), padded and not, odd and even), and the direct one-channel
  /// kernel (padded and not).
  func testConvolutionsOfEveryKind() throws {
    try check("input 7x6x3, conv 8 3x3, relu, flatten, dense 3", batch: 2, expect: [.im2colGemm])
    try check("input 8x7x3, conv 6 5x5 stride 2 same, flatten, dense 4", expect: [.im2colGemm])
    try check(
      "input 5x5x4, conv 8 1x1, relu, conv 10 3x3 stride 2, flatten, dense 2", expect: [.im2colGemm, .im2colGemm])
    try check("input 6x6x16, conv 16 3x3 same, relu, conv 16 3x3, flatten, dense 3", expect: [.winograd, .winograd])
    try check(
      "input 7x7x16, conv 32 3x3 same nobias, relu, conv 16 3x3 same, flatten, dense 3", expect: [.winograd, .winograd])
    try check(
      "input 16x16x16, conv 16 3x3 same, relu, conv 16 3x3 same, flatten, dense 3", batch: 3,
      expect: [.winograd4, .winograd4])
    try check(
      "input 18x17x16, conv 32 3x3, relu, conv 16 3x3 same nobias, maxpool 2, flatten, dense 3",
      expect: [.winograd4, .winograd4])
    try check(
      "input 11x10x16, conv 16 3x3, relu, conv 16 3x3 same, flatten, dense 3", batch: 3,
      expect: [.winograd5, .winograd5])
    try check("input 9x8x1, conv 32 3x3 same, relu, maxpool 2, flatten, dense 3", batch: 2, expect: [.directOneChannel])
    try check("input 7x7x1, conv 32 3x3, flatten, dense 3", expect: [.directOneChannel])
  }

  /// Max and average pooling of every shape, global average pooling, a ReLU of its own,
  /// dense layers with input counts that are not multiples of 16, with and without bias.
  func testPoolingReLUAndDense() throws {
    try check("input 9x7x5, conv 20 3x3, relu, maxpool 3 stride 2, avgpool 2, flatten, dense 7 nobias, relu, dense 3")
    try check("input 8x8x3, conv 16 3x3, avgpool 2 stride 1, relu, globalavgpool, flatten, dense 3")
    try check("input 6x6x2, maxpool 2, flatten, dense 5, relu, dense 2")
  }

  /// BatchNorm on a map and on a vector: in training, the batch's statistics (forward) and
  /// their gradient (backward) over a batch of five images; in evaluation, the running ones.
  func testBatchNorm() throws {
    try check(
      "input 6x5x3, conv 20 3x3 same nobias, batchnorm, relu, maxpool 2, flatten, dense 8 nobias, batchnorm, relu, dense 3",
      batch: 5)
    try check("input 6x6x16, batchnorm, conv 16 3x3 same, batchnorm, relu, flatten, dense 3", batch: 3)
    // Four BatchNorms of two sizes (their gradients share buffers in turn), F(4×4, 3×3)
    // and F(2×2, 3×3) layers, and a group of four images and one of one.
    let block = "conv 16 3x3 same nobias, batchnorm, relu"
    try check(
      "input 8x8x16, \(block), \(block), maxpool 2, \(block), \(block), flatten, dense 3", batch: 5,
      expect: [.winograd4, .winograd4, .winograd, .winograd])
    // F(5×5, 3×3) layers applying the BatchNorm below and adding the one above's sums.
    try check(
      "input 10x9x16, \(block), \(block), maxpool 2, flatten, dense 3", batch: 4, expect: [.winograd5, .winograd5])
  }

  /// Dropout in training: the masks come from (seed, step, position, layer), so they are
  /// the same each time and differ between positions; the gradient goes through them.
  func testDropout() throws {
    try check("input 6x6x2, conv 16 3x3, relu, dropout 0.5, flatten, dense 12, relu, dropout 0.3, dense 3", batch: 2)
    let ones = [Float](repeating: 1, count: 10_000)
    func mask(position: Int) -> [Float] {
      var out = [Float](repeating: 0, count: ones.count)
      dropoutForward(
        ones, count: ones.count, rate: 0.25, key: dropoutKey(seed: 3, step: 7, position: position, layer: 2),
        output: &out)
      return out
    }
    XCTAssertEqual(mask(position: 1), mask(position: 1))
    XCTAssertNotEqual(mask(position: 1), mask(position: 2))
    let dropped = Double(mask(position: 1).filter { $0 == 0 }.count) / Double(ones.count)
    XCTAssertEqual(dropped, 0.25, accuracy: 0.02)
    XCTAssertTrue(mask(position: 1).allSatisfy { $0 == 0 || $0 == 1 / 0.75 })
  }

  // MARK: - The checks

  /// Checks `text`'s model: its evaluation logits against `TorchModel`'s from the PyTorch
  /// layout, and its training gradient (over a batch of `batch` images, with BatchNorm's
  /// batch statistics and dropout's masks) against central finite differences of
  /// `TorchModel`'s loss, for the largest and some random entries of every tensor.
  func check(
    _ text: String, batch: Int = 1, expect kernels: [ModelPlan.Kernel]? = nil, file: StaticString = #filePath,
    line: UInt = #line
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
    let replica = Replica(plan: plan, slots: batch, normalization: normalization)
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
      guard case .dropout(let rate) = planned.layer else { return [] }
      let ones = [Float](repeating: 1, count: planned.output.count)
      var factors = ones
      dropoutForward(
        ones, count: ones.count, rate: rate, key: dropoutKey(seed: 5, step: 0, position: image, layer: layer),
        output: &factors)
      // The engine's mask is over H,W,C values; PyTorch's tensor is C,H,W.
      let s = planned.input
      guard !planned.inputIsFlat else { return factors.map(Double.init) }
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
    let single = Replica(plan: plan, slots: batch, normalization: normalization, winogradTileBudget: 1)
    parameters.withUnsafeBufferPointer { single.prepare(parameters: $0.baseAddress!) }
    let oneByOne = batchGradient(
      replica: single, images: images, labels: labels, parameters: parameters, statistics: statistics,
      groupSize: replica.groupImages)
    XCTAssertEqual(oneByOne, gradient, "\(text): Winograd GEMMs image by image", file: file, line: line)
    let torchGradient = gradient.withUnsafeBufferPointer {
      Dictionary(uniqueKeysWithValues: plan.torchTensors($0.baseAddress!).map { ($0.name, $0.values) })
    }
    for tensor in plan.tensors {
      let analytic = torchGradient[tensor.name]!
      let largest = analytic.indices.sorted { abs(analytic[$0]) > abs(analytic[$1]) }.prefix(3)
      let random = (0..<3).map { _ in generator.nextIndex(below: analytic.count) }
      for index in Set(largest + random) {
        let epsilon = 1e-4
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
