import Foundation
import PTrain
import XCTest

#if canImport(FoundationXML)
  import FoundationXML
#endif

/// Runs the built `ptrain` binary as a user would.
final class CLITests: XCTestCase {
  func ptrain(_ arguments: [String]) throws -> CLIResult { try runPTrain(arguments) }

  /// Every bad input ends in exactly one line on stderr and a non-zero exit.
  func testBadInputGivesOneLineErrorAndNonZeroExit() throws {
    let truncated = try makeTemporaryDirectory()
    for name in Dataset.fileNames {
      try Data(Dataset.bundledMNISTFile(name)!.prefix(500)).write(to: truncated.appendingPathComponent(name + ".gz"))
    }
    let cases: [([String], String)] = [
      (["--threads", "0"], "--threads must be at least 1, got 0"),
      (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
      (["--epochs", "0"], "--epochs must be at least 1, got 0"),
      (["--learning-rate", "-1"], "--learning-rate must be a positive finite number"),
      (["--learning-rate", "nan"], "--learning-rate must be a positive finite number, got nan"),
      (["--learning-rate", "fast"], "fast"),
      (["--train-limit", "70000"], "--train-limit 70000 is larger than the 60000 training images of mnist"),
      (["--train-limit", "0"], "--train-limit must be at least 1"),
      (["--data", "/nonexistent/mnist"], "/nonexistent/mnist: No such file or directory"),
      (["--data", truncated.path], "truncated"),
      (["--dataset", "cifar"], "cifar"),
      (["--no-such-flag"], "no-such-flag"),
    ]
    for (arguments, fragment) in cases {
      let result = try ptrain(arguments.contains("--epochs") ? arguments : arguments + ["--epochs", "1"])
      XCTAssertNotEqual(result.status, 0, "\(arguments)")
      let lines = result.stderr.split(separator: "\n")
      XCTAssertEqual(lines.count, 1, "\(arguments): \(result.stderr)")
      XCTAssertTrue(result.stderr.hasPrefix("ptrain: error: "), "\(arguments): \(result.stderr)")
      XCTAssertTrue(result.stderr.contains(fragment), "\(arguments): '\(result.stderr)' lacks '\(fragment)'")
      XCTAssertEqual(result.stdout, "", "\(arguments)")
    }
  }

  /// `ptrain --threads T --train-limit N --epochs 1 --json` prints the same
  /// parameters_sha256 for every T, and the summary holds the documented fields.
  func testJSONSummaryAndDeterminismAcrossThreads() throws {
    var hashes: Set<String> = []
    for threads in [1, 2, 3] {
      let result = try ptrain(["--threads", "\(threads)", "--train-limit", "640", "--epochs", "1", "--json"])
      XCTAssertEqual(result.status, 0, result.stderr)
      let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
      for key in [
        "test_accuracy", "test_loss", "images_per_second", "threads", "batch_size", "epochs", "seconds",
        "parameters_sha256", "per_class", "confusion_matrix",
      ] {
        XCTAssertNotNil(json[key], "missing \(key)")
      }
      XCTAssertEqual(json["threads"] as? Int, threads)
      XCTAssertEqual(json["batch_size"] as? Int, 32)
      XCTAssertGreaterThan(json["test_accuracy"] as? Double ?? 0, 0.5)
      hashes.insert(try XCTUnwrap(json["parameters_sha256"] as? String))
      XCTAssertTrue(result.stderr.contains("epoch 1"), "one plain progress line per epoch when stderr is not a TTY")
      if threads > ProcessInfo.processInfo.activeProcessorCount {
        XCTAssertTrue(result.stderr.contains("warning: \(threads) threads"), result.stderr)
      }
    }
    XCTAssertEqual(hashes.count, 1, "parameters differ across thread counts: \(hashes)")
  }

  func testTopologyCommand() throws {
    let text = try ptrain(["topology", "--threads", "2"])
    XCTAssertEqual(text.status, 0, text.stderr)
    XCTAssertTrue(text.stdout.contains("physical core"))
    XCTAssertTrue(text.stdout.contains("worker 1 → core"))
    let json = try ptrain(["topology", "--json"])
    let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
    XCTAssertEqual(object["physical_cores"] as? Int, try Topology().physicalCores)
  }

  func testBenchReportsEveryThreadCountAndWritesAChart() throws {
    let chart = try makeTemporaryDirectory().appendingPathComponent("scaling.svg")
    let result = try ptrain(["bench", "--threads", "1,2", "--steps", "5", "--json", "--svg", chart.path])
    XCTAssertEqual(result.status, 0, result.stderr)
    let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
    let rows = try XCTUnwrap(json["rows"] as? [[String: Any]])
    XCTAssertEqual(rows.map { $0["threads"] as? Int }, [1, 2])
    for row in rows {
      XCTAssertGreaterThan(row["images_per_second"] as? Double ?? 0, 0)
      XCTAssertGreaterThan(row["fma_peak_gflops"] as? Double ?? 0, 0)
      // The direct-convolution share: the same speed, counted with the direct FLOP.
      let direct = try XCTUnwrap(row["direct_convolution_percent_of_peak"] as? Double)
      let executed = try XCTUnwrap(row["percent_of_peak"] as? Double)
      let gflops = try XCTUnwrap(row["gflops"] as? Double)
      let directGflops = try XCTUnwrap(row["direct_convolution_gflops"] as? Double)
      XCTAssertEqual(direct, executed * directGflops / gflops, accuracy: 1e-6 * direct)
      let split = try XCTUnwrap(row["step_milliseconds"] as? [String: Double])
      XCTAssertEqual(Set(split.keys), ["compute", "sync", "reduce", "optimizer", "communicate", "data", "barrier"])
      XCTAssertGreaterThan(split["compute"] ?? 0, 0)
      XCTAssertEqual(split["communicate"], 0, "one process exchanges nothing")
    }
    XCTAssertEqual(rows[0]["speedup"] as? Double, 1)
    let svg = try String(contentsOf: chart, encoding: .utf8)
    XCTAssertTrue(svg.hasPrefix("<svg") && svg.contains("polyline") && svg.hasSuffix("</svg>\n"))
    XCTAssertNoThrow(try XMLDocument(data: Data(svg.utf8)), "the chart is well-formed XML")
    // The ideal-scaling line (grey) stays inside the plot, whose top edge is at y = 62.
    let ideal = try XCTUnwrap(svg.split(separator: "\n").first { $0.contains("stroke=\"#888\"") })
    let points = try XCTUnwrap(ideal.split(separator: "points=\"").last?.split(separator: "\"").first)
    let heights = points.split(separator: " ").compactMap { Double($0.split(separator: ",")[1]) }
    XCTAssertEqual(heights.count, 2)
    XCTAssertTrue(heights.allSatisfy { $0 >= 62 }, "\(heights)")
    let bad = try ptrain(["bench", "--threads", "1,x"])
    XCTAssertNotEqual(bad.status, 0)
    XCTAssertEqual(
      bad.stderr, "ptrain: error: --threads takes integers from 1 to 1024 separated by commas, like 1,2,8; got '1,x'\n")
  }

  func testProfileSplitsTrainingTime() throws {
    let result = try ptrain(["--train-limit", "320", "--epochs", "1", "--profile", "--json", "--quiet"])
    XCTAssertEqual(result.status, 0, result.stderr)
    let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
    let profile = try XCTUnwrap(json["profile"] as? [String: Double])
    XCTAssertEqual(Set(profile.keys), ["compute", "sync", "reduce", "optimizer", "communicate", "data", "barrier"])
    XCTAssertGreaterThan(profile["compute"] ?? 0, profile["reduce"] ?? 0)
    XCTAssertEqual(result.stderr, "", "--quiet prints nothing on stderr")
  }
}

/// ptrain stays inside the CPUs it is given (taskset here, as Slurm, numactl or mpirun
/// would narrow them), and `--cpus` narrows them further.
final class AffinityTests: XCTestCase {
  func testWorkersStayInsideTheAllowedCPUs() throws {
    let topology = try Topology()
    try XCTSkipUnless(topology.allowedCPUs.count >= 2 && topology.canBindThreads, "needs two bindable CPUs")
    let cpu = topology.allowedCPUs.last!
    let run = ["--threads", "2", "--epochs", "1", "--train-limit", "640", "--json"]
    let narrowed = try runPTrainInShell("taskset -c \(cpu) \"$PTRAIN\" " + run.joined(separator: " "))
    XCTAssertEqual(narrowed.status, 0, narrowed.stderr)
    let json = try narrowed.json()
    XCTAssertEqual(json["worker_cpus"] as? [[Int]], [[cpu], [cpu]], "read back from inside the workers")
    XCTAssertTrue(narrowed.stderr.contains("2 threads on 1 allowed CPUs"), narrowed.stderr)
    let free = try runPTrain(run)
    XCTAssertEqual(json["parameters_sha256"] as? String, try free.json()["parameters_sha256"] as? String)

    let plan = try runPTrainInShell("taskset -c \(cpu) \"$PTRAIN\" topology --threads 3 --json")
    let report = try plan.json()
    XCTAssertEqual(report["allowed_cpus"] as? [Int], [cpu])
    let planned = try XCTUnwrap(report["plan"] as? [[String: Int]]).map { $0["cpu"] }
    XCTAssertEqual(planned, [cpu, cpu, cpu])
    XCTAssertEqual(report["physical_cores"] as? Int, 1)
  }

  func testCPUListsNarrowAndAreChecked() throws {
    let topology = try Topology()
    let first = topology.allowedCPUs.first!
    let narrowed = try runPTrain(["topology", "--cpus", "\(first)", "--json"])
    XCTAssertEqual(narrowed.status, 0, narrowed.stderr)
    XCTAssertEqual(try narrowed.json()["allowed_cpus"] as? [Int], [first])
    let outside = topology.machineCPUs.last! + 1000
    let refused = try runPTrain(["--cpus", "\(outside)", "--epochs", "1"])
    XCTAssertEqual(refused.status, 64, refused.stderr)
    XCTAssertTrue(
      refused.stderr.contains("--cpus names CPU \(outside), which this process may not use"), refused.stderr)
    let malformed = try runPTrain(["--cpus", "3-1", "--epochs", "1"])
    XCTAssertEqual(malformed.status, 64, malformed.stderr)
    XCTAssertEqual(Topology.parseCPUs("0-3,8,2"), [0, 1, 2, 3, 8])
    XCTAssertEqual(Topology.ranges([0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11")
  }
}
