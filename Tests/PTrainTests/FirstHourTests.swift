import Foundation
import XCTest

@testable import PTrain
@testable import ptrain

/// What a new user meets in the first hour: the progress line in narrow terminals, the
/// data each run says it uses, the report's headline, and tools that do not rebuild
/// each other.
final class FirstHourTests: XCTestCase {
  /// The progress line fits every width from 20 to 200 columns, never touching the last
  /// column, and keeps the epoch and the run's ETA as long as they fit.
  func testProgressLineFitsTheTerminal() {
    let fields = ProgressLine.Fields(
      epoch: 2, epochs: 3, step: 937, stepsPerEpoch: 1875, imagesPerSecond: 18234, loss: 0.123456, epochETA: 61,
      runETA: 3725)
    for columns in 20...200 {
      let line = ProgressLine.render(fields, columns: columns)
      XCTAssertLessThan(line.count, columns, "\(columns) columns: '\(line)'")
      XCTAssertTrue(line.hasPrefix("epoch 2/3"), line)
      if columns >= 27 { XCTAssertTrue(line.contains("1:02:05"), "the run's ETA at \(columns): \(line)") }
    }
    XCTAssertEqual(
      ProgressLine.render(fields, columns: 120),
      "epoch 2/3  ██████████████░░░░░░░░░░░░░░░░  937/1875  18234 img/s  loss 0.1235  ETA 1:01 (run 1:02:05)")
    XCTAssertEqual(
      ProgressLine.render(fields, columns: 80),
      "epoch 2/3  ██████████░░░░░░░░░░░  937/1875  loss 0.1235  ETA 1:01 (run 1:02:05)")
    XCTAssertEqual(
      ProgressLine.render(fields, columns: 60), "epoch 2/3  █████░░░░░░  loss 0.1235  ETA 1:01 (run 1:02:05)")
    let last = ProgressLine.Fields(
      epoch: 3, epochs: 3, step: 10, stepsPerEpoch: 20, imagesPerSecond: 1, loss: 1, epochETA: 5, runETA: 5)
    XCTAssertTrue(ProgressLine.render(last, columns: 120).hasSuffix("ETA 0:05"), "in the last epoch one ETA is enough")
    let report = EpochReport(
      epoch: 4, trainLoss: 0.1, trainAccuracy: 0.97, trainSeconds: 2.5, imagesPerSecond: 24000, test: nil,
      learningRate: 0.001)
    XCTAssertEqual(
      ProgressReporter.epochLine(report, columns: 200), "epoch 4  loss 0.1000  acc 97.00%  24000 img/s  2.5 s")
    XCTAssertEqual(ProgressReporter.epochLine(report, columns: 30), "epoch 4  acc 97.00%")
  }

  /// Every run says first which data it uses and how much of it; finetune defaults to
  /// MNIST, and now says so. The report ends with its headline.
  func testRunsNameTheirDataAndEndWithTheHeadline() throws {
    let directory = try makeTemporaryDirectory()
    let path = directory.appendingPathComponent("run.safetensors").path
    let train = try runPTrain(["--train-limit", "320", "--epochs", "1", "--save", path])
    XCTAssertEqual(train.status, 0, train.stderr)
    XCTAssertTrue(
      train.stderr.hasPrefix("ptrain: training on mnist (bundled): 320 of 60000 train, 10000 test images\n"),
      train.stderr)
    let lines = train.stdout.split(separator: "\n")
    XCTAssertTrue(lines.last?.hasPrefix("test accuracy ") ?? false, "the headline comes last: \(train.stdout)")
    XCTAssertTrue(train.stdout.contains("confusion matrix"))
    let finetune = try runPTrain(["finetune", "--from", path, "--train-limit", "64", "--epochs", "1"])
    XCTAssertEqual(finetune.status, 0, finetune.stderr)
    XCTAssertTrue(
      finetune.stderr.hasPrefix("ptrain: fine-tuning \(path) on mnist (bundled): 64 of 60000 train, 10000 test images"),
      finetune.stderr)
    let evaluate = try runPTrain(["evaluate", path])
    XCTAssertEqual(evaluate.status, 0, evaluate.stderr)
    XCTAssertEqual(evaluate.stderr, "ptrain: evaluating \(path) on mnist (bundled): 10000 test images\n")
    XCTAssertTrue(evaluate.stdout.split(separator: "\n").last?.hasPrefix("test accuracy ") ?? false, evaluate.stdout)
    let quiet = try runPTrain(["--train-limit", "320", "--epochs", "1", "--quiet"])
    XCTAssertEqual(quiet.stderr, "")
    XCTAssertEqual(quiet.stdout.split(separator: "\n").count, 1, "--quiet keeps only the headline: \(quiet.stdout)")
    let mnist = try Dataset.bundledMNIST()
    XCTAssertEqual(mnist.classNames, (0..<10).map(String.init))
    let fashion = try Dataset(name: "fashion-mnist", train: mnist.train.prefix(10), test: mnist.test.prefix(10))
    XCTAssertEqual(fashion.classNames.prefix(2), ["T-shirt/top", "Trouser"])
  }

  /// The resume hint after Ctrl-C is quoted for the shell when a path needs it.
  func testShellCommandQuotesWhatNeedsIt() {
    XCTAssertEqual(
      shellCommand(["ptrain", "--resume", "a b/c's.safetensors", "x"]), #"ptrain --resume 'a b/c'\''s.safetensors' x"#)
    XCTAssertEqual(shellCommand(["/opt/x/ptrain", "train", ""]), "/opt/x/ptrain train ''")
  }

  /// tools/ptrain builds in .build and tools/test in .build-test, so switching between
  /// them rebuilds nothing: building ptrain leaves this suite's build untouched (its
  /// object files keep their times), and a second tools/ptrain compiles nothing.
  func testToolsPtrainDoesNotTouchTheTestBuild() throws {
    let testBuild = ptrainBinary.deletingLastPathComponent().resolvingSymlinksInPath()
    let objects = try FileManager.default.subpathsOfDirectory(atPath: testBuild.path).filter { $0.hasSuffix(".o") }
    XCTAssertFalse(objects.isEmpty, "the test build has object files under \(testBuild.path)")
    func times() throws -> [String: Date] {
      try Dictionary(
        uniqueKeysWithValues: objects.map {
          (
            $0,
            try FileManager.default.attributesOfItem(atPath: testBuild.appendingPathComponent($0).path)[
              .modificationDate] as! Date
          )
        })
    }
    let before = try times()
    let tool = packageRoot.appendingPathComponent("tools/ptrain").path
    let first = try runPTrainInShell("\(tool) --help")
    XCTAssertEqual(first.status, 0, first.stderr)
    let second = try runPTrainInShell("\(tool) --help")
    XCTAssertEqual(second.status, 0, second.stderr)
    XCTAssertFalse(second.stderr.contains("Compiling"), "tools/ptrain rebuilt itself: \(second.stderr)")
    XCTAssertEqual(try times(), before, "tools/ptrain rebuilt the test build's objects")
  }
}
