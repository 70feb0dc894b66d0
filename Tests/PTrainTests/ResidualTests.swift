import XCTest

@testable import PTrain

/// Residual blocks (`ResidualLayer`): their text and Swift API, their refusals, their
/// PyTorch names, every layer kind at every place around and inside a block against
/// PyTorch's semantics, finite differences and the plain operations, and trainers that
/// agree at any thread count.
final class ResidualTests: XCTestCase {
  static let stage =
    "residual(conv 16 3x3 same nobias, batchnorm, relu, conv 16 3x3 same nobias, batchnorm), relu"
  static let downsample =
    "residual(conv 32 3x3 stride 2 same nobias, batchnorm, relu, conv 32 3x3 same nobias, batchnorm; "
    + "conv 32 1x1 stride 2 nobias, batchnorm), relu"

  func testTextAndSwiftAPIGiveTheSameModel() throws {
    let text = "input 8x8x16, \(Self.stage), \(Self.downsample), globalavgpool, flatten, dense 10"
    let model = try ModelDefinition(parsing: text)
    XCTAssertEqual(model.text, text)
    let conv = { (filters: Int, stride: Int) in
      Layer.conv(filters, kernel: 3, stride: stride, padding: .same, bias: false)
    }
    let api = try ModelDefinition(
      input: ImageShape(height: 8, width: 8, channels: 16),
      layers: [
        .residual([conv(16, 1), .batchNorm, .relu, conv(16, 1), .batchNorm]), .relu,
        .residual(
          [conv(32, 2), .batchNorm, .relu, conv(32, 1), .batchNorm],
          shortcut: [.conv(32, kernel: 1, stride: 2, bias: false), .batchNorm]),
        .relu, .globalAvgPool, .flatten, .dense(10),
      ])
    XCTAssertEqual(api, model)
    XCTAssertEqual(
      try ModelDefinition(parsing: "input 4x4x2,residual( relu ;batchnorm ),flatten,dense 2").text,
      "input 4x4x2, residual(relu; batchnorm), flatten, dense 2")
  }

  /// The plan flattens a block into its body, its shortcut and the addition; tensors take
  /// PyTorch's names of the block's children.
  func testPlanNamesTheBlocksTensorsAsPyTorch() throws {
    let plan = try ModelPlan(
      try ModelDefinition(parsing: "input 8x8x16, \(Self.downsample), globalavgpool, flatten, dense 10"))
    XCTAssertEqual(
      plan.layers.map(\.torchPath),
      [
        "0.body.0", "0.body.1", "0.body.2", "0.body.3", "0.body.4", "0.shortcut.0", "0.shortcut.1", "0", "1", "2", "3",
        "4",
      ])
    XCTAssertEqual(plan.layers[7].inputs, [4, 6])
    XCTAssertEqual(plan.layers[5].inputs, [-1])
    XCTAssertEqual(plan.consumers[4], [7])
    XCTAssertTrue(plan.layers[7].fusesReLU, "the addition applies the ReLU after the block")
    XCTAssertEqual(
      plan.tensors.map(\.name),
      [
        "0.body.0.weight", "0.body.1.weight", "0.body.1.bias", "0.body.3.weight", "0.body.4.weight", "0.body.4.bias",
        "0.shortcut.0.weight", "0.shortcut.1.weight", "0.shortcut.1.bias", "4.weight", "4.bias",
      ])
    XCTAssertEqual(plan.stateTensors.first?.name, "0.body.1.running_mean")
  }

  func testBlocksThatDoNotFitAreRefusedWithBothShapes() {
    let cases: [(String, String)] = [
      (
        "input 8x8x16, residual(conv 32 3x3 stride 2 same), flatten, dense 2",
        "layer 0 (residual(conv 32 3x3 stride 2 same)) adds the body's output, 4x4x32, to the shortcut's, 8x8x16"
      ),
      (
        "input 8x8x16, residual(conv 8 3x3 same; conv 16 1x1), flatten, dense 2",
        "adds the body's output, 8x8x8, to the shortcut's, 8x8x16; they must be maps of the same shape"
      ),
      ("input 8x8x16, flatten, residual(relu), dense 2", "layer 1 (residual(relu)) needs a map, not a flat vector"),
      ("input 8x8x16, residual(relu, flatten), dense 2", "a vector of 1024, to the shortcut's, 8x8x16"),
      ("input 8x8x16, residual(residual(relu)), flatten, dense 2", "a layer other than a residual block inside"),
      ("input 8x8x16, residual(), flatten, dense 2", "expected a layer"),
      ("input 8x8x16, residual relu, flatten, dense 2", "expected \"(\" and the block's layers"),
      ("input 8x8x16, residual(relu, flatten, dense 2", "expected a comma or \")\" or \";\", found the end"),
    ]
    for (text, fragment) in cases {
      XCTAssertThrowsError(try ModelDefinition(parsing: text), text) {
        XCTAssertTrue("\($0)".contains(fragment), "'\($0)' lacks '\(fragment)'")
      }
    }
  }

  /// Every layer kind before a block, as its body, as its shortcut, and after it, where it
  /// fits: the check of `check` over three images in groups of two.
  func testEveryKindAroundAndInsideABlock() throws {
    var checked = Set<String>()
    let block = "residual(conv 16 3x3 same nobias, batchnorm)"
    for kind in FusionTests.kinds {
      for layers in [
        [kind, block, "relu"], ["residual(\(kind))", "relu"], ["residual(batchnorm; \(kind))"],
        ["residual(relu, \(kind))"], [block, kind], ["batchnorm", block, "relu", block, kind],
      ] {
        for context in ["", "conv 16 3x3 same nobias"] {
          guard let text = FusionTests.model(layers, after: context), checked.insert(text).inserted else { continue }
          try check(text, batch: 3, shardImages: 2)
        }
      }
    }
    XCTAssertGreaterThan(checked.count, 60, "models checked")
  }

  /// Trainers with and without fusions, on 1, 2 and 3 threads, give a first gradient with
  /// the same bits, close to the plain replica's, and the same parameters after training.
  func testTrainersAgreeAtAnyThreadCount() throws {
    let models = [
      "input 8x8x16, conv 16 3x3 same nobias, batchnorm, relu, \(Self.stage), \(Self.downsample), globalavgpool, "
        + "flatten, dense 4",
      "input 6x6x3, residual(conv 3 3x3 same, relu), relu, maxpool 2, residual(batchnorm; relu), "
        + "flatten, dense 4",
      // The shortcut's BatchNorm reads the image and needs no input gradient, but the body
      // below it (in the plan's order) trains: the segments below it still run.
      "input 8x8x16, residual(conv 16 3x3 same nobias, batchnorm; batchnorm), relu, globalavgpool, flatten, dense 4",
    ]
    for text in models {
      let model = try ModelDefinition(parsing: text)
      let plan = try ModelPlan(model)
      let data = ModelTrainingTests.randomImages(12, shape: model.input, classes: 4)
      let normalization = try Normalization(of: data)
      var gradients: [String: [Float]] = [:]
      var hashes: [String: String] = [:]
      var initial: [Float] = []
      for threads in [1, 2, 3] {
        for (name, fusions) in [("fused", Fusions.all), ("plain", Fusions())] {
          var options = TrainingOptions(threads: threads, epochs: 2, batchSize: 12, shardSize: 2)
          options.fusions = fusions
          let trainer = try Trainer(options: options, model: model, normalization: normalization)
          initial = trainer.parameterValues
          nonisolated(unsafe) var first: [Float]?
          trainer.observeGradient = { gradient, _ in if first == nil { first = Array(gradient) } }
          try trainer.train(data)
          gradients["\(name), \(threads) threads"] = first
          hashes["\(name), \(threads) threads"] = trainer.parametersSHA256
        }
      }
      XCTAssertEqual(Set(gradients.values).count, 1, "\(text): first gradients differ: \(gradients.keys.sorted())")
      XCTAssertEqual(Set(hashes.values).count, 1, "\(text): parameters differ: \(hashes)")
      let replica = Replica(plan: plan, slots: data.count, shardImages: 2, normalization: normalization, fusions: [])
      initial.withUnsafeBufferPointer { replica.prepare(parameters: $0.baseAddress!) }
      let pixels = try data.pixels
      let images = (0..<data.count).map { Array(pixels[($0 * model.input.count)..<(($0 + 1) * model.input.count)]) }
      let reference = batchGradient(
        replica: replica, images: images, labels: data.labels.map(Int.init), parameters: initial,
        statistics: plan.initialState)
      assertClose(gradients.values.first!, reference, tolerance: 1e-4, "\(text): the trainer's first gradient")
    }
  }
}
