import Foundation
import XCTest

@testable import PTrain

/// Training models that are not the seed's: bits that no thread count or resume changes,
/// with BatchNorm, Dropout and augmentation; running statistics; normalisation;
/// checkpoints that name every tensor as PyTorch does.
final class ModelTrainingTests: XCTestCase {
  static let mnist = try! Dataset.bundledMNIST()

  /// `count` random images of `shape` with labels below `classes`, seeded.
  static func randomImages(_ count: Int, shape: ImageShape, classes: Int = 10, seed: UInt64 = 3) -> LabeledImages {
    var generator = SeededGenerator(seed: seed)
    let pixels = (0..<(count * shape.count)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
    let labels = (0..<count).map { _ in UInt8(generator.nextIndex(below: classes)) }
    return try! LabeledImages(pixels: pixels, labels: labels, classes: classes, shape: shape)
  }

  /// For the built-in CNNs, with augmentation: 1, 2 and 3 threads give the same bits,
  /// and stopping mid-epoch, saving and resuming on another thread count gives them too.
  func testBuiltInModelsAreBitIdenticalAcrossThreadsAndResume() throws {
    try checkBitIdenticalAcrossThreadsAndResume(["mnist-cnn", "fashion-cnn", "cifar-cnn"])
  }

  /// The same for resnet-20 (kept apart from the ThreadSanitizer run, which covers the
  /// same worker code with the CNNs: a residual model adds no state that threads share).
  func testResNetIsBitIdenticalAcrossThreadsAndResume() throws {
    try checkBitIdenticalAcrossThreadsAndResume(["resnet-20"])
  }

  func checkBitIdenticalAcrossThreadsAndResume(_ names: [String]) throws {
    for name in names {
      let model = try ModelDefinition(named: name)
      let data =
        model.input.channels == 1 ? Self.mnist.train.prefix(80) : Self.randomImages(80, shape: model.input)
      let normalization = try Normalization(of: data)
      let options = TrainingOptions(
        threads: 1, epochs: 2, batchSize: 32, seed: 11,
        augmentation: Augmentation(padding: 2, flip: true, erasing: 0.5))
      func trainer(threads: Int) throws -> Trainer {
        var options = options
        options.threads = threads
        return try Trainer(options: options, model: model, normalization: normalization)
      }
      var hashes: [String] = []
      for threads in [1, 2, 3] {
        let t = try trainer(threads: threads)
        try t.train(data)
        hashes.append(t.parametersSHA256)
      }
      XCTAssertEqual(Set(hashes).count, 1, "\(name): \(hashes)")
      let first = try trainer(threads: 2)
      try first.train(data) { event in
        if case .step = event, first.optimizer.step == 4 { first.requestStop() }
      }
      XCTAssertEqual(first.stepsIntoEpoch, 1, name)
      let path = try makeTemporaryDirectory().appendingPathComponent("\(name).safetensors").path
      try Checkpoint.save(first.state(), to: path)
      let resumed = try Trainer(resuming: try Checkpoint(path: path).trainingState(), threads: 3)
      try resumed.train(data)
      XCTAssertEqual(resumed.parametersSHA256, hashes[0], "\(name): save and resume mid-epoch")
    }
  }

  /// BatchNorm's running statistics follow PyTorch's rule: momentum 0.1 towards the batch
  /// mean and the unbiased batch variance, once per step; evaluation uses them.
  func testRunningStatisticsFollowPyTorch() throws {
    let model = try ModelDefinition(parsing: "input 4x4x2, batchnorm, flatten, dense 3")
    let data = Self.randomImages(8, shape: model.input, classes: 3)
    let normalization = Normalization(mean: [0.5, 0.5], standardDeviation: [0.25, 0.25])
    let trainer = try Trainer(
      options: TrainingOptions(threads: 2, epochs: 1, batchSize: 8), model: model, normalization: normalization)
    try trainer.train(data)
    XCTAssertEqual(trainer.batchesTracked, 1)
    let pixels = try data.pixels
    for c in 0..<2 {
      var values: [Double] = []
      for image in 0..<8 {
        for p in 0..<16 {
          let byte = Double(pixels[image * 32 + p * 2 + c])
          values.append((byte / 255 - 0.5) / 0.25)
        }
      }
      let mean: Double = values.reduce(0, +) / Double(values.count)
      var squares = 0.0
      for v in values { squares += (v - mean) * (v - mean) }
      let unbiased = squares / Double(values.count - 1)
      let plan = trainer.plan
      XCTAssertEqual(
        Double(trainer.runningStatistics.base[plan.layers[0].runningMean!.offset + c]), 0.1 * mean, accuracy: 1e-5)
      XCTAssertEqual(
        Double(trainer.runningStatistics.base[plan.layers[0].runningVariance!.offset + c]), 0.9 + 0.1 * unbiased,
        accuracy: 1e-5)
    }
  }

  /// MNIST's own statistics, rounded to 4 decimals, are the conventional constants, which
  /// is why the seed model keeps its bits.
  func testNormalizationOfMNISTIsTheConventionalOne() throws {
    XCTAssertEqual(try Normalization(of: Self.mnist.train), .mnist)
    XCTAssertEqual(try Normalization(parsing: "0.1307,0.3081", channels: 1), .mnist)
    XCTAssertEqual(Normalization.mnist.description, "0.1307,0.3081")
    for (text, channels, fragment) in [
      ("0.5", 1, "expected 2 numbers"), ("0.5,0", 1, "must be positive"), ("0.5,0.5,0.5", 3, "expected 6 numbers"),
      ("a,b", 1, "expected 2 numbers"),
    ] {
      XCTAssertThrowsError(try Normalization(parsing: text, channels: channels)) {
        XCTAssertTrue("\($0)".contains(fragment), "\($0)")
      }
    }
  }

  /// A crop and a flip move the image as torchvision's RandomCrop(padding=P) and
  /// RandomHorizontalFlip do, with zeros (standardised) where the crop leaves the image.
  func testAugmentationCropsAndFlips() throws {
    let model = try ModelDefinition(parsing: "input 3x4x2, flatten, dense 2")
    let replica = Replica(
      plan: try ModelPlan(model), normalization: Normalization(mean: [0, 0], standardDeviation: [1, 1]))
    let image = (0..<24).map { UInt8($0 * 10) }
    let augmentation = Augmentation(padding: 1, flip: true)
    image.withUnsafeBufferPointer {
      replica.load(
        image: $0.baseAddress!, augmentation: augmentation, draw: Augmentation.Draw(dy: 2, dx: 0, flip: true))
    }
    let loaded = Array(UnsafeBufferPointer(start: replica.output(-1, 0), count: 24))
    for y in 0..<3 {
      for x in 0..<4 {
        for c in 0..<2 {
          let (sourceY, sourceX) = (y + 2 - 1, (3 - x) + 0 - 1)
          let inside = sourceY < 3 && sourceX >= 0 && sourceX < 4
          let expected: Float = inside ? Float(image[(sourceY * 4 + sourceX) * 2 + c]) / 255 : 0
          XCTAssertEqual(loaded[(y * 4 + x) * 2 + c], expected, accuracy: 1e-6, "(\(y), \(x), \(c))")
        }
      }
    }
    XCTAssertEqual(try Augmentation(parsing: "crop:4,flip"), Augmentation(padding: 4, flip: true))
    XCTAssertEqual(Augmentation(padding: 4, flip: true).description, "crop:4,flip")
    XCTAssertThrowsError(try Augmentation(parsing: "crop:x")) {
      XCTAssertTrue("\($0)".contains("expected crop:P"), "\($0)")
    }
    let draws = (0..<1000).map { augmentation.draw(seed: 1, epoch: 2, index: $0, height: 3, width: 4) }
    XCTAssertEqual(Set(draws.map(\.dy)), [0, 1, 2])
    XCTAssertEqual(Double(draws.filter(\.flip).count) / 1000, 0.5, accuracy: 0.06)
    XCTAssertEqual(draws[7], augmentation.draw(seed: 1, epoch: 2, index: 7, height: 3, width: 4), "a pure function")
    XCTAssertTrue(draws.allSatisfy { $0.erasure == nil })
  }

  /// Random erasing sets a rectangle of the standardised image to 0, as torchvision's
  /// RandomErasing(value=0) after Normalize does, and leaves the crop and flip as they were.
  func testRandomErasingZeroesARectangle() throws {
    let model = try ModelDefinition(parsing: "input 3x4x2, flatten, dense 2")
    let replica = Replica(
      plan: try ModelPlan(model), normalization: Normalization(mean: [0, 0], standardDeviation: [1, 1]))
    let image = (0..<24).map { UInt8($0 * 10 + 5) }
    let erasure = Augmentation.Erasure(top: 1, left: 1, height: 2, width: 2)
    image.withUnsafeBufferPointer {
      replica.load(
        image: $0.baseAddress!, augmentation: Augmentation(padding: 0, flip: false, erasing: 1),
        draw: Augmentation.Draw(erasure: erasure))
    }
    let loaded = Array(UnsafeBufferPointer(start: replica.output(-1, 0), count: 24))
    for y in 0..<3 {
      for x in 0..<4 {
        for c in 0..<2 {
          let erased = (1...2).contains(y) && (1...2).contains(x)
          let expected: Float = erased ? 0 : Float(image[(y * 4 + x) * 2 + c]) / 255
          XCTAssertEqual(loaded[(y * 4 + x) * 2 + c], expected, accuracy: 1e-6, "(\(y), \(x), \(c))")
        }
      }
    }

    XCTAssertEqual(try Augmentation(parsing: "crop:4,flip,erase"), Augmentation(padding: 4, flip: true, erasing: 0.5))
    XCTAssertEqual(try Augmentation(parsing: "erase:0.25"), Augmentation(padding: 0, flip: false, erasing: 0.25))
    XCTAssertEqual(Augmentation(padding: 4, flip: true, erasing: 0.5).description, "crop:4,flip,erase:0.5")
    for bad in ["erase:0", "erase:1.5", "erase:x", "erase:nan"] {
      XCTAssertThrowsError(try Augmentation(parsing: bad), bad) {
        XCTAssertTrue("\($0)".contains("erase:P (a probability above 0, at most 1)"), "\($0)")
      }
    }
    let plain = Augmentation(padding: 2, flip: true)
    let erasing = Augmentation(padding: 2, flip: true, erasing: 0.5)
    let (height, width) = (28, 28)
    var erased = 0
    for index in 0..<2000 {
      let draw = erasing.draw(seed: 3, epoch: 1, index: index, height: height, width: width)
      var withoutErasure = draw
      withoutErasure.erasure = nil
      XCTAssertEqual(withoutErasure, plain.draw(seed: 3, epoch: 1, index: index, height: height, width: width))
      guard let rectangle = draw.erasure else { continue }
      erased += 1
      XCTAssertTrue(rectangle.top >= 0 && rectangle.left >= 0, "\(rectangle)")
      XCTAssertTrue(rectangle.top + rectangle.height <= height && rectangle.left + rectangle.width <= width)
      XCTAssertTrue(rectangle.height < height && rectangle.width < width, "torchvision's rule: strictly smaller")
      let share = Double(rectangle.height * rectangle.width) / Double(height * width)
      XCTAssertTrue((0.005...0.45).contains(share), "area \(share) of the image, drawn from 0.02...0.33")
    }
    XCTAssertEqual(Double(erased) / 2000, 0.5, accuracy: 0.04)
  }

  /// A checkpoint of a BatchNorm model names every tensor as PyTorch's nn.Sequential
  /// does, `num_batches_tracked` included (an I64 scalar), and carries its model text.
  func testCheckpointsOfAnyModelUsePyTorchNames() throws {
    let model = try ModelDefinition(named: "fashion-cnn")
    let trainer = try Trainer(options: TrainingOptions(threads: 2, epochs: 1), model: model, normalization: .mnist)
    try trainer.train(Self.mnist.train.prefix(64))
    let path = try makeTemporaryDirectory().appendingPathComponent("bn.safetensors").path
    try Checkpoint.save(trainer.state(), to: path)
    let file = try SafeTensors.read(path: path)
    let names = Set(file.names.filter { !$0.hasPrefix("optimizer.") })
    XCTAssertTrue(
      names.isSuperset(of: [
        "0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked", "17.weight",
        "21.bias",
      ]))
    XCTAssertFalse(names.contains("0.bias"), "nobias")
    XCTAssertEqual(try file.integers("1.num_batches_tracked"), [2])
    XCTAssertEqual(file.entries["1.num_batches_tracked"]?.shape, [])
    XCTAssertEqual(file.entries["3.weight"]?.shape, [32, 32, 3, 3])
    XCTAssertEqual(file.metadata["model"], "fashion-cnn")
    XCTAssertEqual(file.metadata["model_text"], model.text)
    let loaded = try Checkpoint(path: path)
    XCTAssertEqual(loaded.model, model)
    XCTAssertEqual(loaded.batchesTracked, 2)
    XCTAssertEqual(loaded.runningStatistics, trainer.runningStatistics.array)
    let evaluated = try Trainer(
      options: TrainingOptions(threads: 1, epochs: 1), model: loaded.model, normalization: .mnist)
    try evaluated.loadParameters(
      loaded.parameters, state: loaded.runningStatistics, from: loaded.plan,
      layers: Set(loaded.plan.parameterLayers.map(\.index)))
    XCTAssertEqual(
      try evaluated.evaluate(Self.mnist.test.prefix(200)), try trainer.evaluate(Self.mnist.test.prefix(200)))
  }

  /// A checkpoint written before models were data (the fuzzers' seed, format v1,
  /// mnist-cnn, no model text) still loads, evaluates and resumes.
  func testCheckpointsOfTheEarlierFormatStillLoadAndResume() throws {
    let path = packageRoot.appendingPathComponent("Fuzz/corpus/safetensors/ptrain-checkpoint.safetensors").path
    let checkpoint = try Checkpoint(path: path)
    XCTAssertNil(checkpoint.metadata["model_text"])
    XCTAssertEqual(checkpoint.model, .mnistCNN)
    XCTAssertEqual(checkpoint.normalization, .mnist)
    let state = try checkpoint.trainingState()
    let resumed = try Trainer(resuming: state, threads: 2, epochs: state.epochsCompleted + 1)
    XCTAssertNoThrow(try resumed.train(Self.mnist.train.prefix(Int(checkpoint.metadata["train_images"] ?? "64") ?? 64)))
  }

  /// The model's input must be the data's image shape.
  func testImagesOfAnotherShapeAreRefused() throws {
    let trainer = try Trainer(options: TrainingOptions(threads: 1, epochs: 1), model: .mnistCNN, normalization: .mnist)
    XCTAssertThrowsError(try trainer.train(Self.randomImages(4, shape: ImageShape(height: 32, width: 32, channels: 3))))
    {
      XCTAssertEqual("\($0)", "the training data are 32x32x3 images but the model's input is 28x28x1")
    }
    XCTAssertThrowsError(
      try Trainer(
        options: TrainingOptions(threads: 1), model: try ModelDefinition(named: "cifar-cnn"), normalization: .mnist)
    ) { XCTAssertTrue("\($0)".contains("the normalisation has 1 channel(s) but the model's input has 3"), "\($0)") }
  }
}
