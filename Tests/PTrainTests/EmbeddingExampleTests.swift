import PTrain
import XCTest

/// The program README shows under "Embed the engine in a Swift program", compiled and run.
final class EmbeddingExampleTests: XCTestCase {
  func testReadmeExample() throws {
    // README example begins
    let mnist = try Dataset.bundledMNIST()
    let model = try ModelDefinition(
      input: ImageShape(height: 28, width: 28, channels: 1),
      layers: [
        .conv(16, kernel: 3, padding: .same), .batchNorm, .relu, .maxPool(2),
        .conv(32, kernel: 3), .relu, .maxPool(2), .flatten, .dropout(0.25), .dense(10),
      ])
    let options = TrainingOptions(threads: 2, epochs: 1, batchSize: 32, learningRate: 1e-3, seed: 7)
    let trainer = try Trainer(options: options, model: model, normalization: Normalization(of: mnist.train))
    let summary = try trainer.train(mnist.train.prefix(2_000), evaluatingOn: mnist.test) { event in
      if case .epochFinished(let epoch) = event {
        print("epoch \(epoch.epoch): \(Int(epoch.imagesPerSecond)) img/s")
      }
    }
    let evaluation = trainer.evaluate(mnist.test)
    print("test accuracy", evaluation.accuracy, "loss", evaluation.loss)
    let conv = trainer.plan.tensor("0.weight")!
    let weights = trainer.parameterValues[conv.range]
    print(model.text)
    print(conv.shape, weights.prefix(3), trainer.parametersSHA256)
    // README example ends
    XCTAssertEqual(evaluation, summary.finalEvaluation)
    XCTAssertGreaterThan(evaluation.accuracy, 0.75)
    XCTAssertEqual(weights.count, 144)
    XCTAssertEqual(
      model.text,
      "input 28x28x1, conv 16 3x3 same, batchnorm, relu, maxpool 2, conv 32 3x3, relu, maxpool 2, flatten, dropout 0.25, dense 10"
    )
  }
}
