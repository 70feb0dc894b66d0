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

  /// Trains `model` briefly, saves it, and writes its model tensors alone (no metadata, no
  /// optimizer state) beside it, once per process. Returns both paths and the training
  /// summary.
  func savedAndStripped() throws -> (saved: String, stateDict: String, summary: [String: Any]) {
    if let files = Self.files { return files }
    let directory = try makeTemporaryDirectory()
    let saved = directory.appendingPathComponent("saved.safetensors").path
    let trained = try runPTrain([
      "--model", Self.model, "--train-limit", "640", "--epochs", "1", "--normalize", "0.1307,0.3081",
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
    let evaluated = try runPTrain(["evaluate", stateDict, "--json"] + given)
    XCTAssertEqual(evaluated.status, 0, evaluated.stderr)
    let json = try evaluated.json()
    XCTAssertEqual(json["test_accuracy"] as? Double, summary["test_accuracy"] as? Double)
    XCTAssertEqual(json["parameters_sha256"] as? String, summary["parameters_sha256"] as? String)

    let image = ["\(stateDict)"] + ["--top", "1", "--json"] + given
    let fromStateDict = try runPTrain(["predict"] + image + [try bundledTestImages()])
    let fromSaved = try runPTrain(["predict", saved, "--top", "1", "--json", try bundledTestImages()])
    XCTAssertEqual(fromStateDict.status, 0, fromStateDict.stderr)
    XCTAssertEqual(fromSaved.status, 0, fromSaved.stderr)
    let probabilities = try fromStateDict.json()["images"] as? [[String: Any]]
    let expected = try fromSaved.json()["images"] as? [[String: Any]]
    XCTAssertEqual(probabilities?.count, 10000)
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
    let storedModel = try runPTrain(["predict", saved, "--model", "mnist-cnn", try bundledTestImages()])
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
      "--train-limit", "320", "--epochs", "1", "--quiet", "--json",
    ])
    XCTAssertEqual(tuned.status, 0, tuned.stderr)
    let refused = try runPTrain([
      "finetune", "--from", stateDict, "--model", Self.model, "--train-limit", "320", "--epochs", "1", "--quiet",
    ])
    XCTAssertEqual(refused.status, 1)
    XCTAssertTrue(refused.stderr.contains("--normalize"), refused.stderr)
  }

  /// The bundled MNIST's test images, as an IDX file in a temporary directory.
  func bundledTestImages() throws -> String {
    let directory = try makeTemporaryDirectory()
    try writeBundledMNIST(to: directory)
    return directory.appendingPathComponent(Dataset.fileNames[2] + ".gz").path
  }
}
