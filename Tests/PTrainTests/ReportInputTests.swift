import Foundation
import PTrain
import XCTest

/// `ptrain report` of a run JSON: a summary whose fields disagree is refused naming the
/// field, and a report of many classes stays small.
final class ReportInputTests: XCTestCase {
  /// A `--json` summary of a short run, as a dictionary to edit.
  func summary() throws -> [String: Any] {
    let result = try runPTrain(["--train-limit", "320", "--epochs", "1", "--quiet", "--json"])
    XCTAssertEqual(result.status, 0, result.stderr)
    return try result.json()
  }

  func write(_ object: [String: Any]) throws -> String {
    let path = try makeTemporaryDirectory().appendingPathComponent("run.json").path
    try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: path))
    return path
  }

  func testSummariesWhoseFieldsDisagreeAreRefused() throws {
    let good = try summary()
    let matrix = try XCTUnwrap(good["confusion_matrix"] as? [[Int]])
    let perClass = try XCTUnwrap(good["per_class"] as? [Any])
    let cases: [(String, Any, String)] = [
      ("confusion_matrix", Array(matrix.prefix(3)), "confusion_matrix row 0 has 10 entries, not 3"),
      (
        "confusion_matrix", matrix.enumerated().map { $0.offset == 4 ? Array($0.element.prefix(2)) : $0.element },
        "confusion_matrix row 4 has 2 entries, not 10"
      ),
      (
        "confusion_matrix", [[-1] + matrix[0].dropFirst()] + matrix.dropFirst(),
        "confusion_matrix row 0 holds a negative count"
      ),
      ("per_class", Array(perClass.prefix(9)), "per_class has 9 entries but confusion_matrix has 10 rows"),
      ("class_names", ["a", "b"], "class_names has 2 names but confusion_matrix has 10 rows"),
      ("test_accuracy", 1.5, "test_accuracy 1.5 is not in 0...1"),
      ("threads", 0, "threads 0 is not a positive integer"),
      ("confusion_matrix", [[Int]](), "confusion_matrix has 0 rows"),
    ]
    for (field, value, fragment) in cases {
      var edited = good
      edited[field] = value
      let path = try write(edited)
      assertRefused(try runPTrain(["report", path, "-o", path + ".html"]), status: 1, fragment)
    }
  }

  /// 1,024 classes: the confusions are listed, not drawn cell by cell (151 MB before).
  func testAReportOfManyClassesStaysSmall() throws {
    var run = try summary()
    let classes = 1024
    run["confusion_matrix"] = (0..<classes).map { row in
      (0..<classes).map { $0 == row ? 5 : ($0 == (row + 1) % classes ? 1 : 0) }
    }
    run["per_class"] = (0..<classes).map { _ in ["precision": 0.8, "recall": 0.8, "f1": 0.8, "support": 6] }
    run["class_names"] = (0..<classes).map { "class \($0)" }
    let path = try write(run)
    let result = try runPTrain(["report", path, "-o", path + ".html"])
    XCTAssertEqual(result.status, 0, result.stderr)
    let size = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: path + ".html")[.size] as? Int)
    XCTAssertLessThan(size, 2 << 20, "bytes of a 1,024-class report")
    XCTAssertTrue(try String(contentsOfFile: path + ".html", encoding: .utf8).contains("most frequent"))
  }
}
