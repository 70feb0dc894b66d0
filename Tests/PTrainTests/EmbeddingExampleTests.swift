import PTrain
import XCTest

/// The program README shows under "Embedding the engine", compiled and run.
final class EmbeddingExampleTests: XCTestCase {
  func testReadmeExample() throws {
    // README example begins
    let mnist = try Dataset.bundledMNIST()
    let options = TrainingOptions(threads: 2, epochs: 1, batchSize: 32, learningRate: 1e-3, seed: 7)
    let trainer = try Trainer(options: options)
    let summary = try trainer.train(mnist.train.prefix(2_000), evaluatingOn: mnist.test) { event in
      if case .epochFinished(let epoch) = event {
        print("epoch \(epoch.epoch): \(Int(epoch.imagesPerSecond)) img/s")
      }
    }
    let evaluation = trainer.evaluate(mnist.test)
    print("test accuracy", evaluation.accuracy, "loss", evaluation.loss)
    let conv1 = trainer.spec.tensor("conv1.weight")!
    let weights = trainer.parameterValues[conv1.offset..<(conv1.offset + conv1.count)]
    print(conv1.shape, weights.prefix(3), trainer.parametersSHA256)
    // README example ends
    XCTAssertEqual(evaluation, summary.finalEvaluation)
    XCTAssertGreaterThan(evaluation.accuracy, 0.75)
    XCTAssertEqual(weights.count, 288)
  }
}
