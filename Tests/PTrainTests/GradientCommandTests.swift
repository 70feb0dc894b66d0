import XCTest

@testable import PTrain

/// `ptrain gradient`: one step's gradient and its parameters, in PyTorch's names, as
/// tools/torch-gradient-check reads them.
final class GradientCommandTests: XCTestCase {
  /// The file holds the initial parameters, the batch's mean gradient (here checked
  /// against a replica's image by image), the first images in file order and their labels.
  func testWritesTheFirstBatchesGradientWithPyTorchNames() throws {
    let path = try makeTemporaryDirectory().appendingPathComponent("g.safetensors").path
    let text = "input 28x28x1, conv 8 3x3, relu, maxpool 2, flatten, dense 10"
    let result = try runPTrain(["gradient", "--model", text, "--batch-size", "6", "--threads", "2", "-o", path])
    XCTAssertEqual(result.status, 0, result.stderr)
    let file = try SafeTensors.read(path: path)
    XCTAssertEqual(file.metadata["model_text"], text)
    XCTAssertEqual(file.entries["images"]?.shape, [6, 28, 28, 1])
    XCTAssertEqual(try file.integers("labels"), ModelTrainingTests.mnist.train.labels.prefix(6).map(Int64.init))
    let plan = try ModelPlan(try ModelDefinition(parsing: text))
    let normalization = try Normalization(parsing: try XCTUnwrap(file.metadata["normalize"]), channels: 1)
    var parameters = [Float](repeating: 0, count: plan.parameterCount)
    var written = parameters
    try parameters.withUnsafeMutableBufferPointer {
      try plan.readTorchTensors(from: file, into: $0.baseAddress!, path: path)
    }
    try written.withUnsafeMutableBufferPointer {
      try plan.readTorchTensors(from: file, prefix: "grad.", into: $0.baseAddress!, path: path)
    }
    let replica = Replica(plan: plan, normalization: normalization)
    parameters.withUnsafeBufferPointer { replica.prepare(parameters: $0.baseAddress!) }
    var sum = [Float](repeating: 0, count: plan.parameterCount)
    let pixels = try ModelTrainingTests.mnist.train.pixels
    for image in 0..<6 {
      let label = Int(ModelTrainingTests.mnist.train.labels[image])
      _ = pixels.withUnsafeBufferPointer { p in
        parameters.withUnsafeBufferPointer { w in
          replica.addGradient(
            image: p.baseAddress! + image * 784, label: label, parameters: w.baseAddress!, into: &sum)
        }
      }
    }
    assertClose(written, sum.map { $0 / 6 }, tolerance: 1e-5, "the batch's mean gradient")
  }
}
