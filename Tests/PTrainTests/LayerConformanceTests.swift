import XCTest

@testable import PTrain

/// The suite every layer kind in `Layer.kinds` passes, on the samples below: its text
/// round trip, its shape against the reference's (`TorchModel`), its forward and gradient
/// against the reference in PyTorch's names and layouts and against finite differences,
/// every fused path against the plain operations (`check`), and the same bits on 1, 2
/// and 3 threads. A kind added to the registry without samples fails here.
final class LayerConformanceTests: XCTestCase {
  /// Per kind's word: layers of that kind, with their options and every kernel a
  /// convolution can take on the contexts' 8×8×16 maps.
  static let samples: [String: [String]] = [
    "conv": [
      "conv 16 3x3 same nobias", "conv 16 3x3", "conv 8 3x3 same", "conv 4 1x1 stride 2", "conv 6 5x5 stride 2 same",
    ],
    "batchnorm": ["batchnorm"],
    "relu": ["relu"],
    "maxpool": ["maxpool 2", "maxpool 3 stride 2"],
    "avgpool": ["avgpool 2", "avgpool 3 stride 1"],
    "globalavgpool": ["globalavgpool"],
    "flatten": ["flatten"],
    "dense": ["dense 6", "dense 5 nobias"],
    "dropout": ["dropout 0.3"],
    "residual": [
      "residual(conv 16 3x3 same nobias, batchnorm, relu, conv 16 3x3 same nobias, batchnorm)",
      "residual(conv 8 3x3 stride 2 same nobias, batchnorm, relu, conv 8 3x3 same nobias, batchnorm; "
        + "conv 8 1x1 stride 2 nobias, batchnorm)",
      "residual(relu, dropout 0.3)", "residual(batchnorm; relu)", "residual(conv 16 3x3 same, relu; dropout 0.3)",
    ],
  ]
  /// What lies below a sample: nothing (no input gradient is needed), a convolution whose
  /// ReLU-free output it reads, a flatten (the kinds that take a vector).
  static let contexts = ["", "conv 16 3x3 same nobias", "flatten"]

  /// Every sample in every context it fits, as a whole model with a classifier on top.
  static var models: [(sample: String, text: String)] {
    samples.keys.sorted().flatMap { word in
      samples[word]!.flatMap { sample in
        contexts.compactMap { context in
          let body = (context.isEmpty ? [] : [context]) + [sample]
          let text = "input 8x8x16, " + body.joined(separator: ", ")
          guard let plan = try? ModelPlan(try ModelDefinition(parsing: text + ", flatten, dense 3")) else { return nil }
          let flat = plan.layers[plan.layers.count - 3].outputIsFlat
          return (sample, text + (flat ? ", dense 3" : ", flatten, dense 3"))
        }
      }
    }
  }

  func testEveryKindHasSamples() {
    XCTAssertEqual(Set(Layer.kinds.map { $0.word }), Set(Self.samples.keys), "the registry's kinds and the samples")
    XCTAssertGreaterThan(Self.models.count, 25, "samples in their contexts")
    for word in Self.samples.keys.sorted() {
      XCTAssertTrue(Self.models.contains { $0.sample.hasPrefix(word) }, "\(word) fits none of the contexts")
    }
  }

  /// The layer's text reads back as the same layer (equal and hashing equal), and the
  /// whole model's text reads back as the same model.
  func testTextRoundTrips() throws {
    for (sample, text) in Self.models {
      let model = try ModelDefinition(parsing: text)
      let layer = try XCTUnwrap(model.layers.first { $0.text == sample }, "\(sample) prints as itself in \(text)")
      var parser = ModelTextParser(layer.text)
      let (_, again) = try parser.model()
      XCTAssertEqual(again, [layer], sample)
      XCTAssertEqual(again[0].hashValue, layer.hashValue, sample)
      XCTAssertEqual(try ModelDefinition(parsing: model.text), model, text)
    }
  }

  /// Each layer's planned output has as many values as the reference's, and its tensors
  /// are named by its module path in PyTorch's `nn.Sequential` (`K.body.I` inside the
  /// residual block at index K).
  func testShapesAndNamesMatchTheReference() throws {
    for (_, text) in Self.models {
      let plan = try ModelPlan(try ModelDefinition(parsing: text))
      var generator = SeededGenerator(seed: 3)
      let torch = TorchModel(plan: plan, parameters: plan.initialParameters(using: &generator))
      let image = TorchModel.Map(
        channels: 16, height: 8, width: 8, values: (0..<plan.input.count).map { Double($0 % 7) / 7 })
      XCTAssertEqual(torch.forward([image], training: false)[0].count, plan.classes, text)
      for layer in plan.layers {
        for tensor in [layer.weight, layer.bias, layer.runningMean, layer.runningVariance].compactMap({ $0 }) {
          XCTAssertTrue(tensor.name.hasPrefix("\(layer.torchPath)."), "\(text): \(tensor.name)")
        }
        let path = layer.torchPath.split(separator: ".")
        let top = try XCTUnwrap(Int(path[0]), text)
        let outer = plan.definition.layers[top]
        if let (body, shortcut) = outer.residualBranches, path.count == 3 {
          let branch = path[1] == "body" ? body : shortcut
          XCTAssertEqual(branch[Int(path[2])!], layer.layer, "\(text): \(layer.torchPath)")
        } else {
          XCTAssertEqual(path.count, 1, text)
          XCTAssertEqual(outer, layer.layer, "\(text): \(layer.torchPath)")
        }
      }
    }
  }

  /// Forward and gradient against the reference and finite differences, and every fused
  /// path against the plain operations, over three images in groups of two.
  func testGradientsAgainstTheReference() throws {
    for (_, text) in Self.models { try check(text, batch: 3, shardImages: 2) }
  }

  /// Training gives the same parameters on 1, 2 and 3 threads.
  func testSameBitsAtOneTwoAndThreeThreads() throws {
    for (_, text) in Self.models {
      let model = try ModelDefinition(parsing: text)
      let data = ModelTrainingTests.randomImages(10, shape: model.input, classes: 3)
      let normalization = try Normalization(of: data)
      var hashes: Set<String> = []
      for threads in [1, 2, 3] {
        let options = TrainingOptions(threads: threads, epochs: 1, batchSize: 5, shardSize: 2)
        let trainer = try Trainer(options: options, model: model, normalization: normalization)
        try trainer.train(data)
        hashes.insert(trainer.parametersSHA256)
      }
      XCTAssertEqual(hashes.count, 1, text)
    }
  }
}
