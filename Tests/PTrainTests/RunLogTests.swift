import Foundation
import PTrain
import XCTest

#if canImport(FoundationXML)
  import FoundationXML
#endif

/// `--logdir` (TensorBoard event files) and `--report` / `ptrain report` (one HTML page).
final class RunLogTests: XCTestCase {
  let tiny = ["--train-limit", "320", "--epochs", "2", "--quiet"]

  /// CRC-32C computed bit by bit, apart from the engine's table.
  func crc32c(_ bytes: some Sequence<UInt8>) -> UInt32 {
    var crc: UInt32 = 0xffff_ffff
    for byte in bytes {
      crc ^= UInt32(byte)
      for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0x82f6_3b78 : crc >> 1 }
    }
    return ~crc
  }

  func masked(_ crc: UInt32) -> UInt32 { ((crc >> 15) | (crc << 17)) &+ 0xa282_ead8 }

  /// The fields of one protobuf message: number → values (varints and fixed numbers as
  /// UInt64, length-delimited fields as bytes).
  func fields(_ bytes: [UInt8]) throws -> [Int: [Any]] {
    var result: [Int: [Any]] = [:]
    var index = 0
    func varint() throws -> UInt64 {
      var value: UInt64 = 0
      var shift: UInt64 = 0
      while true {
        guard index < bytes.count, shift < 64 else { throw PTrainError("truncated varint") }
        let byte = bytes[index]
        index += 1
        value |= UInt64(byte & 0x7f) << shift
        if byte < 0x80 { return value }
        shift += 7
      }
    }
    func fixed(_ count: Int) throws -> UInt64 {
      guard index + count <= bytes.count else { throw PTrainError("truncated fixed field") }
      defer { index += count }
      return (0..<count).reduce(UInt64(0)) { $0 | UInt64(bytes[index + $1]) << (8 * UInt64($1)) }
    }
    while index < bytes.count {
      let key = try varint()
      let field = Int(key >> 3)
      switch key & 7 {
      case 0: result[field, default: []].append(try varint())
      case 1: result[field, default: []].append(try fixed(8))
      case 5: result[field, default: []].append(try fixed(4))
      case 2:
        let length = Int(try varint())
        guard index + length <= bytes.count else { throw PTrainError("truncated bytes field") }
        result[field, default: []].append(Array(bytes[index..<(index + length)]))
        index += length
      default: throw PTrainError("wire type \(key & 7)")
      }
    }
    return result
  }

  /// The file's records, each checked against TFRecord's framing and both masked CRCs.
  func records(_ path: String) throws -> [[UInt8]] {
    let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    var records: [[UInt8]] = []
    var index = 0
    func littleEndian(_ range: Range<Int>) -> UInt64 {
      range.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64(bytes[$1]) }
    }
    while index < bytes.count {
      XCTAssertLessThanOrEqual(index + 12, bytes.count, "a truncated record header")
      let length = Int(littleEndian(index..<(index + 8)))
      XCTAssertEqual(UInt32(littleEndian((index + 8)..<(index + 12))), masked(crc32c(bytes[index..<(index + 8)])))
      let payload = Array(bytes[(index + 12)..<(index + 12 + length)])
      let end = index + 12 + length
      XCTAssertEqual(UInt32(littleEndian(end..<(end + 4))), masked(crc32c(payload)), "record \(records.count)")
      records.append(payload)
      index = end + 4
    }
    return records
  }

  func testCRC32CMatchesTheStandardCheckValue() {
    XCTAssertEqual(crc32c(Array("123456789".utf8)), 0xe306_9283)
    XCTAssertEqual(TensorBoardEvents.crc32c(Array("123456789".utf8)), 0xe306_9283)
  }

  /// ptrain's own event file, decoded by the rules: framing, CRCs, and the Event, Summary,
  /// HistogramProto and TensorProto fields TensorBoard reads.
  func testEventFileDecodes() throws {
    let directory = try makeTemporaryDirectory()
    let plain = try runPTrain(tiny + ["--json"])
    let logged = try runPTrain(tiny + ["--json", "--logdir", directory.path, "--log-every", "5"])
    XCTAssertEqual(logged.status, 0, logged.stderr)
    XCTAssertEqual(
      try logged.json()["parameters_sha256"] as? String, try plain.json()["parameters_sha256"] as? String,
      "logging changes no bit")
    let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
    XCTAssertEqual(files.count, 1)
    let name = try XCTUnwrap(files.first)
    XCTAssertTrue(name.hasPrefix("events.out.tfevents."), name)
    let events = try records(directory.appendingPathComponent(name).path).map(fields)
    XCTAssertEqual(events[0][3]?.first as? [UInt8], Array("brain.Event:2".utf8))
    var scalars: [String: [(step: UInt64, value: Float)]] = [:]
    var histograms: [String: Int] = [:]
    var texts: [String] = []
    for event in events.dropFirst() {
      XCTAssertNotNil(event[1]?.first as? UInt64, "wall_time")
      let step = try XCTUnwrap(event[2]?.first as? UInt64)
      let summary = try fields(try XCTUnwrap(event[5]?.first as? [UInt8]))
      for case let value as [UInt8] in summary[1] ?? [] {
        let entry = try fields(value)
        let tag = String(decoding: try XCTUnwrap(entry[1]?.first as? [UInt8]), as: UTF8.self)
        if let simple = entry[2]?.first as? UInt64 {
          scalars[tag, default: []].append((step, Float(bitPattern: UInt32(simple))))
        } else if let histogram = entry[5]?.first as? [UInt8] {
          let h = try fields(histogram)
          let count = Double(bitPattern: try XCTUnwrap(h[3]?.first as? UInt64))
          let buckets = try XCTUnwrap(h[7]?.first as? [UInt8])
          let bucketSum = stride(from: 0, to: buckets.count, by: 8).reduce(0.0) { sum, offset in
            sum
              + Double(bitPattern: (0..<8).reduce(UInt64(0)) { $0 | UInt64(buckets[offset + $1]) << (8 * UInt64($1)) })
          }
          XCTAssertEqual(bucketSum, count, "\(tag): the buckets hold every value")
          XCTAssertEqual((h[6]?.first as? [UInt8])?.count, buckets.count, "\(tag): a limit per bucket")
          histograms[tag, default: 0] += 1
        } else if let tensor = entry[8]?.first as? [UInt8] {
          let t = try fields(tensor)
          XCTAssertEqual(t[1]?.first as? UInt64, 7, "DT_STRING")
          texts.append(String(decoding: try XCTUnwrap(t[8]?.first as? [UInt8]), as: UTF8.self))
          let metadata = try fields(try XCTUnwrap(entry[9]?.first as? [UInt8]))
          let plugin = try fields(try XCTUnwrap(metadata[1]?.first as? [UInt8]))
          XCTAssertEqual(plugin[1]?.first as? [UInt8], Array("text".utf8))
        }
      }
    }
    // 320 images, batch 32: 10 steps an epoch, 20 in all; scalars every 5 steps.
    XCTAssertEqual(scalars["train/loss"]?.map(\.step), [5, 10, 15, 20])
    XCTAssertEqual(scalars["epoch/test_accuracy"]?.map(\.step), [10, 20])
    let accuracy = try XCTUnwrap(try logged.json()["test_accuracy"] as? Double)
    XCTAssertEqual(Double(scalars["epoch/test_accuracy"]!.last!.value), accuracy, accuracy: 1e-6)
    for tag in ["train/accuracy", "learning_rate", "images_per_second", "epoch/train_loss", "epoch/test_loss"] {
      XCTAssertNotNil(scalars[tag], tag)
    }
    XCTAssertEqual(
      histograms,
      [
        "parameters/0.weight": 2, "parameters/0.bias": 2, "parameters/3.weight": 2,
        "parameters/3.bias": 2, "parameters/7.weight": 2, "parameters/7.bias": 2,
      ])
    XCTAssertEqual(texts.count, 1)
    XCTAssertTrue(texts[0].contains("conv 32 3x3") && texts[0].contains("pinned"), texts[0])
  }

  func testLogdirIsCreatedAndMustBeWritable() throws {
    let directory = try makeTemporaryDirectory()
    let created = directory.appendingPathComponent("runs/first")
    let missing = try runPTrain(tiny + ["--logdir", created.path])
    XCTAssertEqual(missing.status, 0, missing.stderr)
    let events = try FileManager.default.contentsOfDirectory(atPath: created.path)
    XCTAssertTrue(events.contains { $0.hasPrefix("events.out.tfevents.") }, "\(events)")
    let file = directory.appendingPathComponent("file")
    try Data().write(to: file)
    let underAFile = try runPTrain(tiny + ["--logdir", file.appendingPathComponent("runs").path])
    XCTAssertEqual(underAFile.status, 64, underAFile.stderr)
    XCTAssertTrue(underAFile.stderr.contains("runs: Not a directory"), underAFile.stderr)
    let mountPoint = try makeTemporaryDirectory()
    guard mount("tmpfs", mountPoint.path, "tmpfs", UInt(MS_RDONLY), "size=64k") == 0 else {
      throw XCTSkip("cannot mount a tmpfs here: \(String(cString: strerror(errno)))")
    }
    defer { umount(mountPoint.path) }
    let readOnly = try runPTrain(tiny + ["--logdir", mountPoint.path])
    XCTAssertEqual(readOnly.status, 64, readOnly.stderr)
    XCTAssertTrue(readOnly.stderr.contains("Read-only file system"), readOnly.stderr)
    XCTAssertFalse(readOnly.stderr.contains("epoch 1"), "refused before training")
  }

  /// The report is well-formed and holds every section, from the run itself, from its
  /// JSON summary and from its checkpoint.
  func testReportsHoldEverySection() throws {
    let directory = try makeTemporaryDirectory()
    let page = directory.appendingPathComponent("run.html").path
    let checkpoint = directory.appendingPathComponent("run.safetensors").path
    let run = try runPTrain(tiny + ["--json", "--report", page, "--save", checkpoint])
    XCTAssertEqual(run.status, 0, run.stderr)
    let summary = directory.appendingPathComponent("run.json")
    try run.stdout.write(to: summary, atomically: true, encoding: .utf8)
    let fromJSON = directory.appendingPathComponent("json.html").path
    let fromCheckpoint = directory.appendingPathComponent("checkpoint.html").path
    XCTAssertEqual(try runPTrain(["report", summary.path, "-o", fromJSON]).status, 0)
    let evaluated = try runPTrain(["report", checkpoint, "-o", fromCheckpoint])
    XCTAssertEqual(evaluated.status, 0, evaluated.stderr)
    let sha = try XCTUnwrap(try run.json()["parameters_sha256"] as? String)
    for path in [page, fromJSON, fromCheckpoint] {
      let html = try String(contentsOfFile: path, encoding: .utf8)
      XCTAssertNoThrow(try XMLDocument(data: Data(html.utf8)), "\(path) is well-formed")
      for section in ["settings", "curves", "throughput", "confusion", "per-class"] {
        XCTAssertTrue(html.contains("<section id=\"\(section)\">"), "\(path) lacks \(section)")
      }
      XCTAssertTrue(html.contains(sha), path)
      XCTAssertEqual(
        html.components(separatedBy: "<polyline").count - 1, 6, "\(path): 2 + 2 + 1 curves and the learning rate")
      XCTAssertFalse(html.contains("<script"), "no scripts")
      XCTAssertEqual(html.contains("<th>speed</th>"), path != fromCheckpoint, "a checkpoint has no run time: \(path)")
      XCTAssertFalse(html.contains(" 0 img/s"), path)
    }
    let bad = try runPTrain(["report", checkpoint + ".missing", "-o", fromJSON])
    XCTAssertEqual(bad.status, 1, bad.stderr)
  }
}
