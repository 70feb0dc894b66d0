import Foundation
import XCTest

@_spi(Kernels) @testable import PTrain

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

  /// A BatchNorm whose input is another BatchNorm's output (directly or through a ReLU),
  /// on a map and on a vector, under a max-pool that applies the upper one, a Winograd
  /// convolution that applies it, or neither: the lower one's output is read in the next
  /// segment, after every image's pass, so it is held per image.
  func testStackedBatchNorms() throws {
    try check(
      "input 6x6x3, conv 8 3x3 same, batchnorm, batchnorm, relu, maxpool 2, flatten, dense 3", batch: 5)
    try check(
      "input 6x6x3, conv 8 3x3 same, batchnorm, relu, batchnorm, maxpool 2, flatten, dense 3", batch: 5)
    try check("input 5x5x2, flatten, dense 8, batchnorm, batchnorm, relu, dense 3", batch: 6)
    try check("input 5x5x2, flatten, dense 8, batchnorm, relu, batchnorm, batchnorm, dense 3", batch: 5)
    try check(
      "input 8x8x16, conv 16 3x3 same nobias, batchnorm, batchnorm, relu, conv 16 3x3 same, flatten, dense 3",
      batch: 5, expect: [.winograd4, .winograd4])
    try check(
      "input 6x6x16, batchnorm, batchnorm, conv 16 3x3 same, batchnorm, relu, batchnorm, avgpool 2, flatten, dense 3",
      batch: 5, expect: [.winograd])
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
}
