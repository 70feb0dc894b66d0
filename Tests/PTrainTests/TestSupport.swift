import Foundation
import PTrain
import Synchronization
import XCTest

/// `count` Floats uniform in [-1, 1) from a fixed seed.
func randomFloats(_ count: Int, seed: UInt64) -> [Float] {
  var generator = SeededGenerator(seed: seed)
  return (0..<count).map { _ in generator.nextUnitFloat() * 2 - 1 }
}

/// Asserts that two arrays agree element-wise within `tolerance · max(1, |expected|)`.
func assertClose(
  _ actual: [Float], _ expected: [Float], tolerance: Float = 1e-4, _ message: String = "",
  file: StaticString = #filePath, line: UInt = #line
) {
  XCTAssertEqual(actual.count, expected.count, "count " + message, file: file, line: line)
  var worst: (index: Int, error: Float) = (0, 0)
  for (index, (a, e)) in zip(actual, expected).enumerated() {
    let error = abs(a - e) / max(1, abs(e))
    if !(error <= worst.error) { worst = (index, error) }
  }
  XCTAssertLessThanOrEqual(
    worst.error, tolerance,
    "\(message): index \(worst.index) is \(actual[worst.index]), expected \(expected[worst.index])",
    file: file, line: line)
}

/// Calls `body` with mutable pointers to copies of the arrays and returns the copies.
func withPointers(
  _ arrays: [[Float]], _ body: ([UnsafeMutablePointer<Float>]) -> Void
) -> [[Float]] {
  let buffers = arrays.map { array -> UnsafeMutablePointer<Float> in
    let pointer = UnsafeMutablePointer<Float>.allocate(capacity: max(array.count, 1))
    pointer.initialize(from: array, count: array.count)
    return pointer
  }
  body(buffers)
  defer { for buffer in buffers { buffer.deallocate() } }
  return zip(arrays, buffers).map { Array(UnsafeBufferPointer(start: $1, count: $0.count)) }
}

/// The root of this package's checkout, found from this file's path.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
  .deletingLastPathComponent().deletingLastPathComponent()

/// The directories `makeTemporaryDirectory` made, for removal when the test process exits.
private let temporaryDirectories = Mutex<[URL]>([])
/// Registers, once, the removal of `temporaryDirectories` at exit (symbolic links inside
/// are removed, never followed).
private let removeTemporaryDirectoriesAtExit: Void = {
  atexit {
    for url in temporaryDirectories.withLock({ $0 }) { try? FileManager.default.removeItem(at: url) }
  }
}()

/// A fresh empty directory under the system's temporary directory, removed with its
/// contents when the test process exits.
func makeTemporaryDirectory() throws -> URL {
  removeTemporaryDirectoriesAtExit
  let url = FileManager.default.temporaryDirectory.appendingPathComponent(
    "ptrain-tests-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  temporaryDirectories.withLock { $0.append(url) }
  return url
}

/// What a finished `ptrain` process left behind.
struct CLIResult {
  let status: Int32
  let stdout: String
  let stderr: String

  /// stdout parsed as one JSON object.
  func json() throws -> [String: Any] {
    try XCTUnwrap(JSONSerialization.jsonObject(with: Data(stdout.utf8)) as? [String: Any], stdout)
  }
}

/// The built `ptrain` binary, beside the test bundle.
var ptrainBinary: URL {
  let beside = Bundle.main.bundleURL.appendingPathComponent("ptrain")
  if FileManager.default.isExecutableFile(atPath: beside.path) { return beside }
  return Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("ptrain")
}

/// Runs `ptrain` with `arguments` to completion, in `directory` when given. For each
/// `(signal, trigger)` in turn, waits until `trigger` appears on stderr, then sends
/// `signal`. A run still going after `timeout` seconds is killed (SIGKILL), so that a
/// hang fails the test instead of stalling the suite.
func runPTrain(
  _ arguments: [String], signals: [(Int32, String)] = [], in directory: URL? = nil, timeout: Double = 300
) throws -> CLIResult {
  try runProcess(ptrainBinary, arguments, signals: signals, in: directory, timeout: timeout)
}

/// Runs `ptrain` through `/bin/sh -c script`, where `$PTRAIN` names the binary: for
/// redirections and limits a `Process` cannot set (`>&-`, `ulimit`).
func runPTrainInShell(_ script: String, in directory: URL? = nil) throws -> CLIResult {
  try runProcess(
    URL(fileURLWithPath: "/bin/sh"), ["-c", script], environment: ["PTRAIN": ptrainBinary.path], in: directory,
    timeout: 300)
}

/// Runs `executable` to completion as `runPTrain` does. Keep each output stream under a
/// pipe's capacity (64 KiB) while sending signals, or send the rest to a file.
func runProcess(
  _ executable: URL, _ arguments: [String], signals: [(Int32, String)] = [], environment: [String: String] = [:],
  in directory: URL?, timeout: Double
) throws -> CLIResult {
  let process = Process()
  process.executableURL = executable
  process.arguments = arguments
  if let directory { process.currentDirectoryURL = directory }
  if !environment.isEmpty {
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
  }
  let out = Pipe()
  let err = Pipe()
  process.standardOutput = out
  process.standardError = err
  try process.run()
  let watchdog = DispatchWorkItem { [pid = process.processIdentifier] in kill(pid, SIGKILL) }
  DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
  defer { watchdog.cancel() }
  var stderr = Data()
  for (signal, trigger) in signals {
    while !String(decoding: stderr, as: UTF8.self).contains(trigger) {
      let chunk = err.fileHandleForReading.availableData
      if chunk.isEmpty { break }
      stderr += chunk
    }
    kill(process.processIdentifier, signal)
  }
  let stdout = out.fileHandleForReading.readDataToEndOfFile()
  stderr += err.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  return CLIResult(
    status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
    stderr: String(decoding: stderr, as: UTF8.self))
}

/// Checks shared by the tests of refusals through the binary.
extension XCTestCase {
  /// Asserts a one-line `ptrain: error:` containing `fragment`, exit `status`, and that
  /// training never started (no epoch line) when `beforeTraining`.
  func assertRefused(
    _ result: CLIResult, status: Int32, _ fragment: String, beforeTraining: Bool = true,
    file: StaticString = #filePath, line: UInt = #line
  ) {
    XCTAssertEqual(result.status, status, result.stderr, file: file, line: line)
    let lines = result.stderr.split(separator: "\n")
    XCTAssertEqual(lines.count, 1, result.stderr, file: file, line: line)
    XCTAssertTrue(result.stderr.hasPrefix("ptrain: error: "), result.stderr, file: file, line: line)
    XCTAssertTrue(result.stderr.contains(fragment), "'\(result.stderr)' lacks '\(fragment)'", file: file, line: line)
    if beforeTraining { XCTAssertFalse(result.stderr.contains("epoch 1  loss"), file: file, line: line) }
  }

  /// A copy of the safetensors file at `source` with `changes` made to its metadata.
  func rewriteMetadata(_ source: String, to target: String, _ changes: [String: String]) throws {
    let file = try SafeTensors.read(path: source)
    let tensors = try file.names.map { ($0, file.entries[$0]!.shape, try file.floats($0)!) }
    try writeFileAtomically(
      SafeTensors.encode(tensors: tensors, metadata: file.metadata.merging(changes) { _, new in new }), to: target)
  }
}

/// Writes the bundled MNIST's four files, gzipped, into `directory`: a `--data` directory.
func writeBundledMNIST(to directory: URL) throws {
  for name in Dataset.fileNames {
    try Data(try XCTUnwrap(Dataset.bundledMNISTFile(name))).write(to: directory.appendingPathComponent(name + ".gz"))
  }
}
