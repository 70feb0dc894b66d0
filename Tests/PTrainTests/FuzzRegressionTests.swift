import Foundation
@_spi(Fuzzing) import PTrain
import XCTest

/// Replays the fuzzers' seed corpora (`Fuzz/corpus/`) and every input a fuzzer ever
/// crashed on (`Fuzz/regressions/`) through the same entry points.
final class FuzzRegressionTests: XCTestCase {
  /// The files under `directory`, sorted; none if it does not exist.
  func inputs(_ directory: URL) throws -> [URL] {
    guard FileManager.default.fileExists(atPath: directory.path) else { return [] }
    return try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
      .sorted { $0.path < $1.path }
  }

  func replay(_ target: String, through entryPoint: ([UInt8]) -> Void) throws -> Int {
    let directories = [
      packageRoot.appendingPathComponent("Fuzz/corpus/\(target)"),
      packageRoot.appendingPathComponent("Fuzz/regressions/\(target)"),
    ]
    var count = 0
    for file in try directories.flatMap(inputs) {
      entryPoint(Array(try Data(contentsOf: file)))
      count += 1
    }
    return count
  }

  func testIDXInputsDoNotCrash() throws {
    XCTAssertGreaterThanOrEqual(try replay("idx", through: FuzzEntryPoints.idx), 5)
  }

  func testSafeTensorsInputsDoNotCrash() throws {
    XCTAssertGreaterThanOrEqual(try replay("safetensors", through: FuzzEntryPoints.safetensors), 4)
  }

  func testFinetuneInputsDoNotCrash() throws {
    XCTAssertGreaterThanOrEqual(try replay("finetune", through: FuzzEntryPoints.finetune), 5)
  }

  func testImageInputsDoNotCrash() throws {
    XCTAssertGreaterThanOrEqual(try replay("image", through: FuzzEntryPoints.image), 4)
  }

  /// The seeds are what they claim: the IDX seeds decode and the full checkpoint resumes.
  func testSeedsAreValid() throws {
    let idx = packageRoot.appendingPathComponent("Fuzz/corpus/idx")
    let images = try IDXFile.decode(
      Array(Data(contentsOf: idx.appendingPathComponent("images-2.idx.gz"))), name: "seed", dimensionCount: 3)
    XCTAssertEqual(images.dimensions, [2, 28, 28])
    let checkpoint = try Checkpoint(
      path: packageRoot.appendingPathComponent("Fuzz/corpus/safetensors/ptrain-checkpoint.safetensors").path)
    XCTAssertEqual(try checkpoint.trainingState().optimizerStep, 2)
  }
}
