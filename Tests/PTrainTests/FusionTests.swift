import XCTest

@testable import PTrain

/// Every pair of adjacent layer kinds, not only the built-in models' pairs: each model is
/// checked against PyTorch's semantics and finite differences, and each fused path
/// against the plain operations (`check`). A fused path assumes what lies around it; here
/// each kind meets every other kind as its neighbour above and below.
final class FusionTests: XCTestCase {
  /// Every layer kind, with every kernel a convolution can take on a 10×10×16 input:
  /// F(5×5) ("same"), F(4×4) (valid, 8×8), F(2×2) (on smaller maps), im2col (8 filters;
  /// 1×1); max-pooling 2×2 (which applies a BatchNorm below it) and 3×3.
  static let kinds = [
    "conv 16 3x3 same nobias", "conv 16 3x3", "conv 8 3x3 same", "conv 16 1x1", "batchnorm", "relu", "maxpool 2",
    "maxpool 3 stride 1", "avgpool 2", "globalavgpool", "flatten", "dropout 0.5", "dense 16",
  ]
  /// What lies below the kinds under test: nothing (no input gradient is needed), a
  /// convolution, a flatten (the kinds on a vector), a dense layer.
  static let contexts = ["", "conv 16 3x3 same nobias", "flatten", "flatten, dense 16"]

  /// The model that puts `kinds` in a row after `context` on a 10×10×16 input and ends
  /// in a classifier, or nil where the plan refuses it (a convolution after flatten).
  static func model(_ kinds: [String], after context: String) -> String? {
    let body = (context.isEmpty ? [] : [context]) + kinds
    let text = "input 10x10x16, " + body.joined(separator: ", ")
    guard let plan = try? ModelPlan(try ModelDefinition(parsing: text + ", flatten, dense 3")) else { return nil }
    let last = plan.layers[plan.layers.count - 3]  // before the flatten and dense added
    return text + (last.outputIsFlat ? ", dense 3" : ", flatten, dense 3")
  }

  /// Every ordered pair of kinds, first as the model's first layers (no input gradient
  /// below them) and then above a convolution (with one), over three images in groups of
  /// two, so that a buffer held for one group is caught being read for another.
  func testEveryPairOfAdjacentLayerKinds() throws {
    var checked = Set<String>()
    for context in Self.contexts {
      for first in Self.kinds {
        for second in Self.kinds {
          guard let text = Self.model([first, second], after: context), checked.insert(text).inserted else { continue }
          try check(text, batch: 3, shardImages: 2)
        }
      }
    }
    XCTAssertGreaterThan(checked.count, 250, "pairs checked")
  }

  /// Kinds on either side of a ReLU, which a convolution, dense layer or BatchNorm below
  /// applies as it stores, and whose gradient a max-pool above takes: the fused paths
  /// against the plain operations (finite differences are the pairs' test).
  func testEveryKindAroundAReLU() throws {
    var checked = Set<String>()
    for context in ["conv 16 3x3 same nobias", "flatten, dense 16"] {
      for first in Self.kinds {
        for second in Self.kinds {
          guard let text = Self.model([first, "relu", second], after: context), checked.insert(text).inserted else {
            continue
          }
          try check(text, batch: 3, shardImages: 2, finiteDifferences: false)
        }
      }
    }
    XCTAssertGreaterThan(checked.count, 100, "triples checked")
  }

  /// A convolution that makes the input gradient of the BatchNorm above it
  /// (`batchNormGradientInConvolution`): F(4×4) and F(5×5), two blocks of 16 channels,
  /// and two images per GEMM, each in its own padded copy. `check` compares it with the
  /// stored gradient bit for bit (all rules but that one, and none).
  func testBatchNormGradientMadeInTheConvolutionBelow() throws {
    let block = "conv 32 3x3 same nobias, batchnorm, relu"
    for (input, kernel) in [("8x8x16", ModelPlan.Kernel.winograd4), ("10x9x16", .winograd5)] {
      let text = "input \(input), \(block), \(block), flatten, dense 3"
      let plan = try ModelPlan(try ModelDefinition(parsing: text))
      let normalization = Normalization(
        mean: [Float](repeating: 0.4, count: 16), standardDeviation: [Float](repeating: 0.3, count: 16))
      let replica = Replica(plan: plan, slots: 3, shardImages: 2, normalization: normalization)
      // The first convolution needs no input gradient: its BatchNorm stores its own.
      XCTAssertEqual(replica.batchNormAbove, [nil, nil, nil, 4, nil, nil, nil, nil], text)
      XCTAssertEqual(replica.winogradImages[3], 2, "\(text): two images per GEMM")
      let plain = Replica(
        plan: plan, slots: 3, shardImages: 2, normalization: normalization,
        fusions: Fusions.all.subtracting(.batchNormGradientInConvolution))
      XCTAssertTrue(plain.batchNormAbove.allSatisfy { $0 == nil }, text)
      try check(text, batch: 3, shardImages: 2, expect: [kernel, kernel])
    }
  }

  /// Trainers on every thread count, with and without fusions, give a first step's
  /// gradient with the same bits, close to the plain replica's image by image (whose sums
  /// run in another order), and the same parameters after training: for stacked
  /// BatchNorms on maps and vectors, under a pool or a Winograd convolution, and dense
  /// layers between BatchNorms.
  func testTrainersAgreeWithThePlainPathAtAnyThreadCount() throws {
    let models = [
      "input 6x6x3, conv 8 3x3 same, batchnorm, batchnorm, relu, maxpool 2, flatten, dense 4",
      "input 6x6x3, conv 8 3x3 same, batchnorm, relu, batchnorm, maxpool 2, flatten, dense 4",
      "input 5x5x2, flatten, dense 8, batchnorm, batchnorm, relu, dense 4",
      "input 8x8x16, conv 16 3x3 same nobias, batchnorm, batchnorm, relu, conv 16 3x3 same, batchnorm, relu, "
        + "maxpool 2, flatten, dense 4",
      // Dense layers below BatchNorms, with biases and input gradients, over blocks of
      // 6, 3 and 2 shards (`denseOverBlock`).
      "input 6x6x3, conv 8 3x3 same, batchnorm, relu, maxpool 2, flatten, dense 8, batchnorm, relu, "
        + "dense 6, batchnorm, relu, dense 4",
      "input 6x6x3, conv 8 3x3 same, batchnorm, relu, maxpool 2, flatten, dense 8, relu, batchnorm, dense 4",
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
