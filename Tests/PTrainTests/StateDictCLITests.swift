import Foundation
import PTrain
import XCTest

/// A `state_dict` as PyTorch saves it (tensors only, no metadata) of a model other than
/// the MNIST CNN: `evaluate`, `predict`, `summary` and `finetune` read it with `--model`
/// and `--normalize`, and refuse it without them in one line.
final class StateDictCLITests: XCTestCase {
  static let model =
    "input 28x28x1, conv 8 3x3 same nobias, batchnorm, relu, "
    + "residual(conv 8 3x3 same nobias, batchnorm, relu, conv 8 3x3 same nobias, batchnorm), relu, maxpool 2, "
    + "flatten, dropout 0.1, dense 10"

  /// The files `savedAndStripped` made, shared by the tests of one process.
  nonisolated(unsafe) static var files: (saved: String, stateDict: String, summary: [String: Any])?
  /// A small MNIST in IDX files (the bundled one's first 640 training and 200 test
  /// images), so that the tests stay quick under the sanitizers too.
  nonisolated(unsafe) static var smallData: String?

  /// Trains `model` briefly, saves it, and writes its model tensors alone (no metadata, no
  /// optimizer state) beside it, once per process. Returns both paths and the training
  /// summary.
  func savedAndStripped() throws -> (saved: String, stateDict: String, summary: [String: Any]) {
    if let files = Self.files { return files }
    let directory = try makeTemporaryDirectory()
    let saved = directory.appendingPathComponent("saved.safetensors").path
    let trained = try runPTrain([
      "--model", Self.model, "--data", try smallMNIST(), "--epochs", "1", "--normalize", "0.1307,0.3081",
      "--save", saved, "--quiet", "--json",
    ])
    XCTAssertEqual(trained.status, 0, trained.stderr)
    let file = try SafeTensors.read(path: saved)
    let names = file.names.filter { !$0.hasPrefix("optimizer.") }
    var floats: [(name: String, shape: [Int], values: [Float])] = []
    var integers: [(name: String, shape: [Int], values: [Int64])] = []
    for name in names {
      let shape = file.entries[name]!.shape
      if file.entries[name]!.dtype == "I64" {
        integers.append((name, shape, try XCTUnwrap(file.integers(name))))
      } else {
        floats.append((name, shape, try XCTUnwrap(file.floats(name))))
      }
    }
    XCTAssertFalse(integers.isEmpty, "BatchNorm's num_batches_tracked rides along")
    let stateDict = directory.appendingPathComponent("state_dict.safetensors").path
    try writeFileAtomically(SafeTensors.encode(tensors: floats, integers: integers, metadata: [:]), to: stateDict)
    Self.files = (saved, stateDict, try trained.json())
    return Self.files!
  }

  func testEvaluateAndPredictReadAStateDictWithModelAndNormalize() throws {
    let (saved, stateDict, summary) = try savedAndStripped()
    let given = ["--model", Self.model, "--normalize", "0.1307,0.3081"]
    let evaluated = try runPTrain(["evaluate", stateDict, "--data", try smallMNIST(), "--json"] + given)
    XCTAssertEqual(evaluated.status, 0, evaluated.stderr)
    let json = try evaluated.json()
    XCTAssertEqual(json["test_accuracy"] as? Double, summary["test_accuracy"] as? Double)
    XCTAssertEqual(json["parameters_sha256"] as? String, summary["parameters_sha256"] as? String)

    let image = ["\(stateDict)"] + ["--top", "1", "--json"] + given
    let fromStateDict = try runPTrain(["predict"] + image + [try testImages()])
    let fromSaved = try runPTrain(["predict", saved, "--top", "1", "--json", try testImages()])
    XCTAssertEqual(fromStateDict.status, 0, fromStateDict.stderr)
    XCTAssertEqual(fromSaved.status, 0, fromSaved.stderr)
    let probabilities = try fromStateDict.json()["images"] as? [[String: Any]]
    let expected = try fromSaved.json()["images"] as? [[String: Any]]
    XCTAssertEqual(probabilities?.count, 200)
    XCTAssertEqual(
      probabilities?.map { $0["probabilities"] as? [Double] ?? [] },
      expected?.map { $0["probabilities"] as? [Double] ?? [] })

    let shown = try runPTrain(["summary", stateDict] + given)
    XCTAssertEqual(shown.status, 0, shown.stderr)
    XCTAssertTrue(shown.stdout.contains("residual"), shown.stdout)
  }

  func testAStateDictWithoutModelOrNormalizeIsRefusedInOneLine() throws {
    let (saved, stateDict, _) = try savedAndStripped()
    let noModel = try runPTrain(["evaluate", stateDict, "--normalize", "0.1307,0.3081"])
    XCTAssertEqual(noModel.status, 1)
    XCTAssertTrue(noModel.stderr.contains("has no model text in __metadata__ and no tensor 7.weight"), noModel.stderr)
    XCTAssertTrue(noModel.stderr.contains("--model"), noModel.stderr)
    let noNormalization = try runPTrain(["evaluate", stateDict, "--model", Self.model])
    XCTAssertEqual(noNormalization.status, 1)
    XCTAssertTrue(
      noNormalization.stderr.contains("does not say how its images were standardised"), noNormalization.stderr)
    let wrongModel = try runPTrain(["evaluate", stateDict, "--model", "mnist-cnn", "--normalize", "0.1307,0.3081"])
    XCTAssertNotEqual(wrongModel.status, 0)
    XCTAssertTrue(wrongModel.stderr.contains("was it saved from the model given"), wrongModel.stderr)
    let stored = try runPTrain(["evaluate", saved, "--normalize", "0.5,0.5"])
    XCTAssertEqual(stored.status, 64, stored.stderr)
    XCTAssertTrue(stored.stderr.contains("stores its normalisation"), stored.stderr)
    let storedModel = try runPTrain(["predict", saved, "--model", "mnist-cnn", try testImages()])
    XCTAssertEqual(storedModel.status, 64, storedModel.stderr)
    XCTAssertTrue(storedModel.stderr.contains("stores its model"), storedModel.stderr)
    for result in [noModel, noNormalization, wrongModel, stored, storedModel] {
      XCTAssertEqual(result.stderr.filter { $0 == "\n" }.count, 1, result.stderr)
    }
  }

  func testFinetuneStartsFromAStateDict() throws {
    let (_, stateDict, _) = try savedAndStripped()
    let tuned = try runPTrain([
      "finetune", "--from", stateDict, "--model", Self.model, "--normalize", "0.1307,0.3081", "--freeze", "0",
      "--data", try smallMNIST(), "--epochs", "1", "--quiet", "--json",
    ])
    XCTAssertEqual(tuned.status, 0, tuned.stderr)
    let refused = try runPTrain([
      "finetune", "--from", stateDict, "--model", Self.model, "--data", try smallMNIST(), "--epochs", "1", "--quiet",
    ])
    XCTAssertEqual(refused.status, 1)
    XCTAssertTrue(refused.stderr.contains("--normalize"), refused.stderr)
  }

  /// The small MNIST's test images: an IDX file of 200 images.
  func testImages() throws -> String {
    try smallMNIST() + "/t10k-images-idx3-ubyte"
  }

  /// Writes `smallData` once per process and returns its directory.
  func smallMNIST() throws -> String {
    if let directory = Self.smallData { return directory }
    let directory = try makeTemporaryDirectory()
    let mnist = try Dataset.bundledMNIST()
    for (prefix, images) in [("train", mnist.train.prefix(640)), ("t10k", mnist.test.prefix(200))] {
      let count: [UInt8] = withUnsafeBytes(of: UInt32(images.count).bigEndian, Array.init)
      let size: [UInt8] = withUnsafeBytes(of: UInt32(28).bigEndian, Array.init)
      let header: [UInt8] = [0, 0, 8, 3] + count + size + size
      let pixels: [UInt8] = try images.pixels
      try Data(header + pixels).write(to: directory.appendingPathComponent("\(prefix)-images-idx3-ubyte"))
      let labels: [UInt8] = [0, 0, 8, 1] + count + images.labels
      try Data(labels).write(to: directory.appendingPathComponent("\(prefix)-labels-idx1-ubyte"))
    }
    Self.smallData = directory.path
    return directory.path
  }
}
