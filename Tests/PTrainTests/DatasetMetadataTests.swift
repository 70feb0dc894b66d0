import XCTest

@testable import PTrain

/// What checkpoints record about their data, through the library as through the CLI.
final class DatasetMetadataTests: XCTestCase {
  func testLibraryCheckpointsCarryTheDataAsTheCLIsDo() throws {
    let mnist = try Dataset.bundledMNIST()
    let trainer = try Trainer(options: TrainingOptions(threads: 1, epochs: 1), model: .mnistCNN, normalization: .mnist)
    try trainer.train(mnist.train.prefix(64))
    let path = try makeTemporaryDirectory().appendingPathComponent("m.safetensors").path
    try Checkpoint.save(trainer.state(), to: path, data: mnist)
    let saved = try Checkpoint(path: path)
    XCTAssertEqual(saved.metadata["dataset"], "mnist")
    XCTAssertEqual(saved.metadata["train_images"], "60000")
    XCTAssertEqual(saved.classNames, (0..<10).map(String.init))
  }

  /// Class names reach the metadata as JSON with every control character escaped, so a
  /// folder named with one still makes a checkpoint that loads; a head with more classes
  /// than the data names gets numbers for the rest.
  func testClassNamesAreJSONWithControlCharactersEscaped() throws {
    XCTAssertEqual(Dataset.jsonString("a\u{7F}b\u{85}\"\\"), #""a\u007fb\u0085\"\\""#)
    let images = try LabeledImages(
      pixels: [0, 0], labels: [0, 1], classes: 2, shape: ImageShape(height: 1, width: 1, channels: 1))
    let dataset = try Dataset(name: "odd", train: images, test: images, classNames: ["T-shirt/top", "a\u{85}b"])
    let text = try XCTUnwrap(dataset.checkpointMetadata(trainImages: 2, classes: 3)["class_names"])
    XCTAssertFalse(text.unicodeScalars.contains { $0.properties.generalCategory == .control })
    XCTAssertEqual(
      try JSONParser.parse(Array(text.utf8)), .array([.string("T-shirt/top"), .string("a\u{85}b"), .string("2")]))
  }
}
