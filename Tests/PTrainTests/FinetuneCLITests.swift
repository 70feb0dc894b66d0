import Foundation
import PTrain
import XCTest

/// `finetune` and the checkpoints it starts from, when the model text, `--classes` and the
/// file disagree: the text's head wins or the disagreement is refused, before any tensor
/// is read.
final class FinetuneCLITests: XCTestCase {
  let tiny = ["--train-limit", "320", "--epochs", "1", "--quiet"]
  static let mnistText = "input 28x28x1, conv 32 3x3, relu, maxpool 2, conv 64 3x3, relu, maxpool 2, flatten"

  /// A 10-class mnist-cnn checkpoint in a fresh directory.
  func sourceCheckpoint() throws -> String {
    let path = try makeTemporaryDirectory().appendingPathComponent("source.safetensors").path
    let result = try runPTrain(tiny + ["--save", path])
    XCTAssertEqual(result.status, 0, result.stderr)
    return path
  }

  /// A directory of IDX files: 64 training and 16 test images of 28×28, labels 0 to 4.
  func fiveClassData() throws -> String {
    let directory = try makeTemporaryDirectory()
    for (prefix, count) in [("train", 64), ("t10k", 16)] {
      let images: [UInt8] =
        [0, 0, 8, 3] + [UInt32(count), 28, 28].flatMap { withUnsafeBytes(of: $0.bigEndian, Array.init) }
      let labels: [UInt8] = [0, 0, 8, 1] + withUnsafeBytes(of: UInt32(count).bigEndian, Array.init)
      try Data(images + (0..<(count * 784)).map { UInt8(truncatingIfNeeded: $0 * 31) })
        .write(to: directory.appendingPathComponent("\(prefix)-images-idx3-ubyte"))
      try Data(labels + (0..<count).map { UInt8($0 % 5) })
        .write(to: directory.appendingPathComponent("\(prefix)-labels-idx1-ubyte"))
    }
    return directory.path
  }

  /// A `--model` text with a 5-class head and `--new-head` trains 5 classes; `--classes`
  /// that disagrees with the text's head is refused.
  func testTheModelTextsHeadWins() throws {
    let source = try sourceCheckpoint()
    let saved = try makeTemporaryDirectory().appendingPathComponent("five.safetensors").path
    let five = Self.mnistText + ", dense 5"
    let result = try runPTrain(
      ["finetune", "--from", source, "--model", five, "--new-head", "--data", try fiveClassData(), "--save", saved]
        + ["--epochs", "1", "--quiet", "--json"])
    XCTAssertEqual(result.status, 0, result.stderr)
    XCTAssertEqual(try Checkpoint(path: saved).plan.classes, 5)
    XCTAssertEqual((try result.json()["confusion_matrix"] as? [Any])?.count, 5)
    assertRefused(
      try runPTrain(["finetune", "--from", source, "--model", five, "--new-head", "--classes", "7"] + tiny),
      status: 64, "--classes 7 disagrees with the 5-class head of --model")
    assertRefused(
      try runPTrain(["finetune", "--from", source, "--model", five] + tiny), status: 64,
      "has a 10-class head but the model asks for 5 classes; add --new-head")
  }

  /// A `--model` with more layers than the checkpoint's, or other layers at its indices,
  /// is refused naming the layer, instead of reading past the checkpoint's plan.
  func testModelsThatDoNotMatchTheCheckpointAreRefused() throws {
    let source = try sourceCheckpoint()
    let longer = [Self.mnistText + ", dense 10, dense 10", Self.mnistText + ", dense 10, relu, dense 10"]
    for (text, index) in zip(longer, [8, 9]) {
      let result = try runPTrain(["finetune", "--from", source, "--model", text] + tiny)
      assertRefused(result, status: 64, "layer \(index) (dense 10) of --model is not in")
      // With a new head, the layers below it are the checkpoint's: a layer added on top.
      XCTAssertEqual(try runPTrain(["finetune", "--from", source, "--model", text, "--new-head"] + tiny).status, 0)
    }
    let other = "input 28x28x1, conv 16 3x3, relu, maxpool 2, conv 64 3x3, relu, maxpool 2, flatten, dense 10"
    for extra in [[], ["--new-head"]] {
      let result = try runPTrain(["finetune", "--from", source, "--model", other] + extra + tiny)
      assertRefused(result, status: 64, "layer 0 of --model is conv 16 3x3 on 28x28x1, but")
    }
  }

  /// A checkpoint naming a dataset ptrain does not know, without a data directory, is
  /// refused by evaluate and resume instead of running on MNIST.
  func testAnUnknownDatasetInACheckpointIsRefused() throws {
    let source = try sourceCheckpoint()
    let crafted = try makeTemporaryDirectory().appendingPathComponent("imagenet.safetensors").path
    try rewriteMetadata(source, to: crafted, ["dataset": "imagenet"])
    let message = "names the dataset 'imagenet', which is none of mnist, fashion-mnist, and no data directory"
    assertRefused(try runPTrain(["evaluate", crafted]), status: 1, message)
    assertRefused(try runPTrain(["train", "--resume", crafted, "--epochs", "2", "--quiet"]), status: 1, message)
    assertRefused(try runPTrain(["report", crafted, "-o", crafted + ".html"]), status: 1, message)
    let named = try runPTrain(["evaluate", crafted, "--dataset", "mnist", "--json"])
    XCTAssertEqual(named.status, 0, "--dataset still chooses: \(named.stderr)")
  }
}
