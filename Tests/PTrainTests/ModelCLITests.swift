import Foundation
import PTrain
import XCTest

/// `--model`, `summary`, CIFAR-10 files, `--augment` and `--normalize` through the binary.
final class ModelCLITests: XCTestCase {
  /// Writes CIFAR-10's six binary files into a new directory: `records` records each,
  /// label `record % 10` (or `badLabel` in the first test record), pixels from a seed.
  func writeCIFAR(records: Int = 20, badLabel: UInt8? = nil, truncate: Bool = false) throws -> URL {
    let directory = try makeTemporaryDirectory()
    var generator = SeededGenerator(seed: 9)
    for file in CIFAR10.trainingFiles + [CIFAR10.testFile] {
      var bytes: [UInt8] = []
      for record in 0..<records {
        bytes.append(file == CIFAR10.testFile && record == 0 ? badLabel ?? 0 : UInt8(record % 10))
        bytes += (0..<3072).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
      }
      if truncate && file == CIFAR10.testFile { bytes.removeLast(100) }
      try Data(bytes).write(to: directory.appendingPathComponent(file))
    }
    return directory
  }

  /// CIFAR-10's binary files decode channels-last, and a CIFAR model trains on them.
  func testCIFAR10FilesTrainTheCIFARModel() throws {
    let directory = try writeCIFAR()
    let dataset = try Dataset.load(directory: directory.path, name: "cifar")
    XCTAssertEqual(dataset.train.count, 100)
    XCTAssertEqual(dataset.train.shape, CIFAR10.shape)
    XCTAssertEqual(dataset.classNames.first, "airplane")
    let raw = try Data(contentsOf: directory.appendingPathComponent("data_batch_1.bin"))
    // Record 0, pixel (0, 1): red at byte 1 + 1, green at 1 + 1024 + 1, blue at 1 + 2048 + 1.
    XCTAssertEqual(Array(try dataset.train.pixels[3..<6]), [raw[2], raw[1026], raw[2050]])
    let result = try runPTrain([
      "--model", "cifar-cnn", "--data", directory.path, "--epochs", "1", "--augment", "crop:4,flip", "--json",
      "--quiet",
    ])
    XCTAssertEqual(result.status, 0, result.stderr)
    XCTAssertEqual(try result.json()["train_images"] as? Int, 100)
  }

  /// CIFAR-10's images stay in their files and are read a segment of steps at a time:
  /// training and evaluating on them gives the same bits as on the same bytes in memory,
  /// however small the segments.
  func testImagesReadFromTheirFilesTrainAsInMemory() throws {
    let dataset = try Dataset.load(directory: try writeCIFAR().path, name: "cifar")
    XCTAssertNil(dataset.train.bytesInMemory, "CIFAR-10's images stay in their files")
    let inMemory = try LabeledImages(
      pixels: try dataset.train.pixels, labels: dataset.train.labels, classes: 10, shape: CIFAR10.shape)
    let model = try ModelDefinition(
      parsing: "input 32x32x3, conv 4 3x3 same, batchnorm, relu, maxpool 2, flatten, dense 10")
    let options = TrainingOptions(
      threads: 2, epochs: 2, batchSize: 8, seed: 5, augmentation: Augmentation(padding: 2, flip: true))
    let normalization = try Normalization(of: dataset.train)
    XCTAssertEqual(normalization, try Normalization(of: inMemory))
    func train(_ images: LabeledImages, stagedBytes: Int) throws -> (String, Evaluation) {
      let trainer = try Trainer(options: options, model: model, normalization: normalization)
      trainer.stagedBytes = stagedBytes
      try trainer.train(images)
      return (trainer.parametersSHA256, try trainer.evaluate(images))
    }
    let expected = try train(inMemory, stagedBytes: 4 << 20)
    // 3 steps a segment (100 images make 13 steps), and 1 image.
    for stagedBytes in [3 * 8 * 3072, 1] {
      let (sha, evaluation) = try train(dataset.train, stagedBytes: stagedBytes)
      XCTAssertEqual(sha, expected.0, "segments of \(stagedBytes) bytes")
      XCTAssertEqual(evaluation, expected.1)
    }
  }

  /// A file that shrinks or changes after it was opened stops training and evaluation
  /// with an error that names it.
  func testAChangedImageFileStopsTrainingWithAnError() throws {
    let directory = try writeCIFAR()
    let dataset = try Dataset.load(directory: directory.path, name: "cifar")
    let model = try ModelDefinition(named: "cifar-cnn")
    let trainer = try Trainer(
      options: TrainingOptions(threads: 2, epochs: 1, batchSize: 10), model: model,
      normalization: try Normalization(of: dataset.train))
    let last = directory.appendingPathComponent("data_batch_5.bin")
    let shrinking = try FileHandle(forWritingTo: last)  // in place: the open file shrinks
    try shrinking.truncate(atOffset: 10 * 3073)
    try shrinking.close()
    XCTAssertThrowsError(try trainer.train(dataset.train)) { error in
      XCTAssertTrue("\(error)".contains("data_batch_5.bin: read 0 of 3073 bytes"), "\(error)")
      XCTAssertTrue("\(error)".hasSuffix("the file shrank"), "\(error)")
    }
    let test = directory.appendingPathComponent("test_batch.bin")
    var changed = try Data(contentsOf: test)
    changed[3 * 3073] = 9  // record 3's label was 3
    let handle = try FileHandle(forWritingTo: test)
    try handle.write(contentsOf: changed)
    try handle.close()
    XCTAssertThrowsError(try trainer.evaluate(dataset.test)) { error in
      XCTAssertTrue("\(error)".hasSuffix("test_batch.bin: record 3 changed while in use (label 3, now 9)"), "\(error)")
    }
  }

  /// `summary` prints every layer with its PyTorch index, output shape, parameters, cost
  /// and kernel, and `--list` the built-ins.
  func testSummaryDescribesTheModel() throws {
    let table = try runPTrain(["summary", "--model", "mnist-cnn"])
    XCTAssertEqual(table.status, 0, table.stderr)
    XCTAssertTrue(
      table.stdout.contains("  3  conv2     conv 64 3x3  11x11x64      18,496         5.01  Winograd F(4x4,3x3)"),
      table.stdout)
    XCTAssertTrue(table.stdout.contains("total: 34,826 parameters"), table.stdout)
    XCTAssertTrue(table.stdout.contains("PyTorch: nn.Sequential(Conv2d(1, 32, 3), ReLU(), MaxPool2d(2)"), table.stdout)
    let json = try runPTrain([
      "summary", "--model", "conv 8 3x3 same, relu, flatten, dense 3", "--input", "5x5x2", "--json",
    ])
    XCTAssertEqual(json.status, 0, json.stderr)
    let object = try json.json()
    XCTAssertEqual(object["parameters"] as? Int, 2 * 9 * 8 + 8 + 200 * 3 + 3)
    XCTAssertEqual((object["layers"] as? [[String: Any]])?.count, 4)
    let list = try runPTrain(["summary", "--list"])
    XCTAssertEqual(
      list.stdout.split(separator: "\n").map { String($0.prefix(11)) },
      ["mnist-cnn  ", "fashion-cnn", "cifar-cnn  ", "resnet-20  "])
    // A residual block: PyTorch paths, the addition's row and choice, the nested modules.
    let block = try runPTrain([
      "summary", "--input", "8x8x16", "--model",
      "residual(conv 16 3x3 same nobias, batchnorm; conv 16 1x1 nobias), relu, flatten, dense 2",
    ])
    XCTAssertEqual(block.status, 0, block.stderr)
    for line in [
      "    0.body.0  conv1      conv 16 3x3 same nobias", "0.shortcut.0  conv2      conv 16 1x1 nobias",
      "           0  residual   add: body + shortcut", "batchnorm + add + ReLU, one pass",
      "PyTorch: nn.Sequential(Residual(body=nn.Sequential(Conv2d(16, 16, 3, padding=1, bias=False), BatchNorm2d(16)), "
        + "shortcut=nn.Sequential(Conv2d(16, 16, 1, bias=False))), ReLU(), Flatten(), Linear(1024, 2))",
    ] {
      XCTAssertTrue(block.stdout.contains(line), "'\(line)' not in\n\(block.stdout)")
    }
    let resnet = try runPTrain(["summary", "--model", "resnet-20", "--input", "28x28x1", "--json"])
    XCTAssertEqual(resnet.status, 0, resnet.stderr)
    XCTAssertEqual(try resnet.json()["parameters"] as? Int, 272_186)
    XCTAssertEqual(try resnet.json()["name"] as? String, "resnet-20")
  }

  /// A model given as text trains, and its checkpoint rebuilds it alone.
  func testAModelTextTrainsAndItsCheckpointRebuildsIt() throws {
    let path = try makeTemporaryDirectory().appendingPathComponent("custom.safetensors").path
    let text = "conv 16 3x3 same, batchnorm, relu, maxpool 2, dropout 0.2, flatten, dense 10"
    let trained = try runPTrain([
      "--model", text, "--train-limit", "320", "--epochs", "1", "--save", path, "--json", "--quiet",
    ])
    XCTAssertEqual(trained.status, 0, trained.stderr)
    XCTAssertEqual(try Checkpoint(path: path).model.text, "input 28x28x1, " + text)
    let evaluated = try runPTrain(["evaluate", path, "--json"])
    XCTAssertEqual(evaluated.status, 0, evaluated.stderr)
    XCTAssertEqual(try evaluated.json()["test_accuracy"] as? Double, try trained.json()["test_accuracy"] as? Double)
    let resumed = try runPTrain(["train", "--resume", path, "--epochs", "2", "--quiet", "--json"])
    XCTAssertEqual(resumed.status, 0, resumed.stderr)
    let tuned = try runPTrain([
      "finetune", "--from", path, "--freeze", "0,1", "--new-head", "--classes", "10", "--train-limit", "64", "--epochs",
      "1",
      "--quiet",
    ])
    XCTAssertEqual(tuned.status, 0, tuned.stderr)
  }

  /// Every bad model, data or flag is one line with the documented exit code.
  func testBadModelsDataAndFlagsGiveOneLineErrors() throws {
    let directory = try makeTemporaryDirectory()
    let good = directory.appendingPathComponent("good.safetensors").path
    XCTAssertEqual(try runPTrain(["--train-limit", "64", "--epochs", "1", "--quiet", "--save", good]).status, 0)
    // A checkpoint whose model text disagrees with its tensors.
    let file = try SafeTensors.read(path: good)
    let tensors = try file.names.map { ($0, file.entries[$0]!.shape, try file.floats($0)!) }
    var metadata = file.metadata
    metadata["model_text"] = "input 28x28x1, conv 16 3x3, relu, maxpool 2, flatten, dense 10"
    let mismatched = directory.appendingPathComponent("mismatched.safetensors").path
    try writeFileAtomically(SafeTensors.encode(tensors: tensors, metadata: metadata), to: mismatched)
    let cifar = try writeCIFAR()
    let cases: [([String], Int32, String)] = [
      (["--model", "conv 32 3x3, relu, bogus, dense 10"], 64, "--model: model text, position 20: expected a layer"),
      (
        ["--model", "resnet-50"], 64,
        "--model resnet-50: not a built-in model (mnist-cnn, fashion-cnn, cifar-cnn, resnet-20)"
      ),
      (["--model", "conv 8 3x3, dense 10"], 64, "layer 1 (dense 10) needs a flat input; put flatten before it"),
      (
        ["--model", "maxpool 2, maxpool 2, maxpool 2, maxpool 2, maxpool 2, flatten, dense 10"], 64,
        "would pool the map below 1x1"
      ),
      (
        ["--model", "conv 8 3x3 stride 2, conv 8 7x7 stride 2, conv 8 7x7, flatten, dense 10"], 64,
        "kernel larger than the map"
      ),
      (["--model", "cifar-cnn"], 64, "the model's input is 32x32x3 but the data's images are 28x28x1"),
      (
        ["--model", "mnist-cnn", "--data", cifar.path], 64,
        "the model's input is 28x28x1 but the data's images are 32x32x3"
      ),
      (["evaluate", mismatched], 1, "has shape [32, 1, 3, 3], the model needs [16, 1, 3, 3]"),
      (["finetune", "--from", good, "--freeze", "5"], 64, "no layer with parameters called \"5\""),
      (["finetune", "--from", good, "--freeze", "9"], 64, "no layer with parameters called \"9\""),
      (["--augment", "rotate"], 64, "augmentation \"rotate\": expected crop:P"),
      (["--augment", "crop:99"], 64, "expected crop:P (P from 1 to 16)"),
      (["--augment", "erase:2"], 64, "erase:P (a probability above 0, at most 1)"),
      (["--normalize", "0.1,0.2,0.3"], 64, "expected 2 numbers (1 mean(s), then 1 standard deviation(s))"),
      (["--normalize", "0.1,0"], 64, "a standard deviation must be positive"),
      (["--model", "cifar-cnn", "--data", cifar.path, "--normalize", "0.5,0.5"], 64, "expected 6 numbers"),
      (
        ["--data", try writeCIFAR(truncate: true).path, "--model", "cifar-cnn"], 1,
        "is not a whole number of 3073-byte CIFAR-10 records"
      ),
      (
        ["--data", try writeCIFAR(badLabel: 10).path, "--model", "cifar-cnn"], 1,
        "label 10 of record 0 is not below the 10 classes"
      ),
      (
        ["train", "--resume", good, "--model", "fashion-cnn", "--epochs", "2"], 64,
        "--model cannot change a resumed run"
      ),
      (["summary", "--model", "conv 8 3x3, flatten, dense 3"], 64, "no input shape; begin with \"input HxWxC\""),
      (["summary", "--model", "mnist-cnn", "--input", "28x28"], 64, "--input takes HxWxC"),
    ]
    for (arguments, status, fragment) in cases {
      let needsEpochs = !["evaluate", "summary"].contains(arguments[0]) && !arguments.contains("--epochs")
      let result = try runPTrain(arguments + (needsEpochs ? ["--epochs", "1", "--train-limit", "64"] : []))
      XCTAssertEqual(result.status, status, "\(arguments): \(result.stderr)")
      XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, "\(arguments): \(result.stderr)")
      XCTAssertTrue(result.stderr.hasPrefix("ptrain: error: "), "\(arguments): \(result.stderr)")
      XCTAssertTrue(result.stderr.contains(fragment), "\(arguments): '\(result.stderr)' lacks '\(fragment)'")
    }
  }
}
