import PTrain
import Synchronization
import XCTest

final class TrainingTests: XCTestCase {
  static let mnist = try! Dataset.bundledMNIST()

  func train(threads: Int, seed: UInt64 = 3, images: Int = 320, batchSize: Int = 32, epochs: Int = 1) throws -> Trainer
  {
    let trainer = try Trainer(
      options: TrainingOptions(threads: threads, epochs: epochs, batchSize: batchSize, seed: seed),
      normalization: .mnist)
    try trainer.train(Self.mnist.train.prefix(images))
    return trainer
  }

  /// The same seed gives the same bits for any thread count, including more threads than
  /// shards and a final partial batch.
  func testParametersAreBitIdenticalAcrossThreadCounts() throws {
    let reference = try train(threads: 1, images: 300)
    for threads in [2, 3, 5] {
      let other = try train(threads: threads, images: 300)
      XCTAssertEqual(other.parametersSHA256, reference.parametersSHA256, "\(threads) threads")
      XCTAssertEqual(other.parameterValues, reference.parameterValues)
    }
    XCTAssertNotEqual(try train(threads: 2, seed: 4, images: 300).parametersSHA256, reference.parametersSHA256)
  }

  func testInitialisationIsGlorotUniformWithZeroBiases() throws {
    let plan = try ModelPlan(.mnistCNN)
    XCTAssertEqual(plan.parameterCount, 34_826)
    var generator = SeededGenerator(seed: 1)
    let values = plan.initialParameters(using: &generator)
    for tensor in plan.tensors {
      let slice = values[tensor.offset..<(tensor.offset + tensor.count)]
      if tensor.name.hasSuffix("bias") {
        XCTAssertTrue(slice.allSatisfy { $0 == 0 }, tensor.name)
      } else {
        let fans =
          tensor.shape.count == 4 ? (9 * tensor.shape[2], 9 * tensor.shape[3]) : (tensor.shape[1], tensor.shape[0])
        let limit = (6 / Float(fans.0 + fans.1)).squareRoot()
        XCTAssertLessThanOrEqual(slice.map(abs).max()!, limit, tensor.name)
        XCTAssertGreaterThan(slice.map(abs).max()!, 0.9 * limit, tensor.name)
      }
    }
  }

  /// The whole model's backward pass agrees with finite differences of its loss.
  func testModelGradientMatchesFiniteDifferences() throws {
    let plan = try ModelPlan(.mnistCNN)
    var generator = SeededGenerator(seed: 5)
    var parameters = plan.initialParameters(using: &generator)
    for i in parameters.indices { parameters[i] += generator.nextUnitFloat() * 0.02 - 0.01 }  // non-zero biases
    let image = Array(try Self.mnist.train.pixels[0..<784])
    let label = Int(Self.mnist.train.labels[0])
    let replica = Replica(plan: plan)
    func loss(_ p: [Float]) -> Double {
      image.withUnsafeBufferPointer { image in
        p.withUnsafeBufferPointer { p in
          replica.prepare(parameters: p.baseAddress!)
          return Double(replica.evaluate(image: image.baseAddress!, label: label, parameters: p.baseAddress!).loss)
        }
      }
    }
    var gradient = [Float](repeating: 0, count: plan.parameterCount)
    image.withUnsafeBufferPointer { image in
      parameters.withUnsafeBufferPointer { p in
        gradient.withUnsafeMutableBufferPointer { g in
          replica.prepare(parameters: p.baseAddress!)
          _ = replica.addGradient(
            image: image.baseAddress!, label: label, parameters: p.baseAddress!, into: g.baseAddress!)
        }
      }
    }
    for tensor in plan.tensors {
      // The entries with the largest gradients in each tensor, where the check is sharpest.
      let indices = (tensor.offset..<(tensor.offset + tensor.count)).sorted { abs(gradient[$0]) > abs(gradient[$1]) }
        .prefix(6)
      for i in indices {
        let epsilon: Float = 1e-3
        var plus = parameters
        var minus = parameters
        plus[i] += epsilon
        minus[i] -= epsilon
        let numeric = (loss(plus) - loss(minus)) / Double(2 * epsilon)
        XCTAssertEqual(
          Double(gradient[i]), numeric, accuracy: 2e-3 + 0.05 * abs(numeric), "\(tensor.name)[\(i - tensor.offset)]")
      }
    }
  }

  /// A short run learns: well above chance on held-out images.
  func testShortTrainingLearns() throws {
    let trainer = try Trainer(options: TrainingOptions(threads: 2, epochs: 1, seed: 1), normalization: .mnist)
    let test = Self.mnist.test.prefix(1000)
    let before = try trainer.evaluate(test)
    let steps = Mutex(0)
    let summary = try trainer.train(Self.mnist.train.prefix(2000), evaluatingOn: test) { event in
      if case .step = event { steps.withLock { $0 += 1 } }
    }
    XCTAssertEqual(steps.withLock { $0 }, 63)
    let after = try XCTUnwrap(summary.finalEvaluation)
    XCTAssertLessThan(after.loss, before.loss / 2)
    XCTAssertGreaterThan(after.accuracy, 0.75)
    XCTAssertEqual(after.confusion.flatMap { $0 }.reduce(0, +), 1000)
    XCTAssertEqual(trainer.optimizer.step, 63)
  }

  func testEvaluationMetrics() {
    // truth:      0 0 1 1 2
    // prediction: 0 1 1 1 0
    let e = Evaluation(losses: [1, 2, 3, 4, 5], predictions: [0, 1, 1, 1, 0], labels: [0, 0, 1, 1, 2], classCount: 3)
    XCTAssertEqual(e.loss, 3)
    XCTAssertEqual(e.accuracy, 0.6)
    XCTAssertEqual(e.confusion, [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    XCTAssertEqual(e.classes[0].precision, 0.5)
    XCTAssertEqual(e.classes[1].precision, 2.0 / 3.0)
    XCTAssertEqual(e.classes[1].recall, 1)
    XCTAssertEqual(e.classes[1].f1, 0.8, accuracy: 1e-12)
    XCTAssertEqual(e.classes[2].f1, 0)
  }

  /// The library names its options as the API does; the CLI turns them into flags.
  func testInvalidOptionsAreRejected() {
    for (options, option, message, flagMessage) in [
      (
        TrainingOptions(threads: 0), "threads", "threads must be at least 1, got 0",
        "--threads must be at least 1, got 0"
      ),
      (
        TrainingOptions(threads: 1, batchSize: 0), "batchSize", "batchSize must be at least 1, got 0",
        "--batch-size must be at least 1, got 0"
      ),
      (
        TrainingOptions(threads: 1, learningRate: -1), "learningRate",
        "learningRate must be a positive finite number, got -1.0",
        "--learning-rate must be a positive finite number, got -1.0"
      ),
      (
        TrainingOptions(threads: 1, learningRate: .nan), "learningRate",
        "learningRate must be a positive finite number, got nan",
        "--learning-rate must be a positive finite number, got nan"
      ),
    ] {
      XCTAssertThrowsError(try Trainer(options: options, normalization: .mnist)) { error in
        let error = error as! PTrainError
        XCTAssertEqual(error.description, message)
        XCTAssertEqual(error.option, option)
        XCTAssertEqual(error.namingOption(String(flagMessage.prefix { $0 != " " })).description, flagMessage)
      }
    }
  }
}
