/// TensorBoard's event records, encoded by hand: the few fields of `Event`, `Summary`,
/// `HistogramProto`, `TensorProto` and `SummaryMetadata` (tensorflow/core/util/event.proto
/// and tensorflow/core/framework/summary.proto) that scalars, histograms and text need,
/// in TFRecord framing with masked CRC-32C.
///
/// Written by hand rather than with swift-protobuf: the generator needs `protoc` and the
/// TensorBoard `.proto` tree at build time, and a first build with its plugin takes about
/// ten minutes on two cores, for five messages of which ptrain writes a dozen fields.
package enum TensorBoardEvents {
  /// The record that opens every event file: `file_version: "brain.Event:2"`.
  package static func fileVersion(wallTime: Double) -> [UInt8] {
    var event = ProtobufWriter()
    event.double(1, wallTime)
    event.bytes(3, Array("brain.Event:2".utf8))
    return event.bytes
  }

  /// An event of scalar summaries (`simple_value`, as `SummaryWriter.add_scalar` writes
  /// them) at global step `step`.
  package static func scalars(_ values: [(tag: String, value: Float)], step: Int, wallTime: Double) -> [UInt8] {
    var summary = ProtobufWriter()
    for (tag, value) in values {
      var entry = ProtobufWriter()
      entry.bytes(1, Array(tag.utf8))
      entry.float(2, value)
      summary.message(1, entry)
    }
    return event(summary: summary, step: step, wallTime: wallTime)
  }

  /// An event with a histogram of `values` under `tag`, bucketed as TensorFlow's and
  /// `SummaryWriter.add_histogram`'s default: edges ±1e-12 · 1.1^k up to 1e20, and 0;
  /// empty buckets at both ends left out. Cost: O(values · log buckets).
  package static func histogram(tag: String, values: [Float], step: Int, wallTime: Double) -> [UInt8] {
    let edges = histogramEdges
    var counts = [Double](repeating: 0, count: edges.count - 1)
    var minimum = Double.infinity
    var maximum = -Double.infinity
    var sum = 0.0
    var squares = 0.0
    for value in values.map(Double.init) {
      minimum = Swift.min(minimum, value)
      maximum = Swift.max(maximum, value)
      sum += value
      squares += value * value
      // The bucket whose half-open interval [edge, next) holds the value (the last one closed).
      var low = 0
      var high = edges.count - 1
      while high - low > 1 {
        let middle = (low + high) / 2
        if value < edges[middle] { high = middle } else { low = middle }
      }
      counts[Swift.min(low, counts.count - 1)] += 1
    }
    let first = counts.firstIndex { $0 > 0 } ?? 0
    let last = counts.lastIndex { $0 > 0 } ?? 0
    var histogram = ProtobufWriter()
    histogram.double(1, values.isEmpty ? 0 : minimum)
    histogram.double(2, values.isEmpty ? 0 : maximum)
    histogram.double(3, Double(values.count))
    histogram.double(4, sum)
    histogram.double(5, squares)
    histogram.packedDoubles(6, Array(edges[(first + 1)...(last + 1)]))
    histogram.packedDoubles(7, Array(counts[first...last]))
    var entry = ProtobufWriter()
    entry.bytes(1, Array(tag.utf8))
    entry.message(5, histogram)
    var summary = ProtobufWriter()
    summary.message(1, entry)
    return event(summary: summary, step: step, wallTime: wallTime)
  }

  /// An event with `text` (Markdown) under `tag`, as `SummaryWriter.add_text` writes it:
  /// a one-element string tensor for the "text" plugin.
  package static func text(tag: String, _ text: String, step: Int, wallTime: Double) -> [UInt8] {
    var dimension = ProtobufWriter()
    dimension.varint(1, 1)
    var shape = ProtobufWriter()
    shape.message(2, dimension)
    var tensor = ProtobufWriter()
    tensor.varint(1, 7)  // DT_STRING
    tensor.message(2, shape)
    tensor.bytes(8, Array(text.utf8))
    var pluginData = ProtobufWriter()
    pluginData.bytes(1, Array("text".utf8))
    var metadata = ProtobufWriter()
    metadata.message(1, pluginData)
    var entry = ProtobufWriter()
    entry.bytes(1, Array(tag.utf8))
    entry.message(8, tensor)
    entry.message(9, metadata)
    var summary = ProtobufWriter()
    summary.message(1, entry)
    return event(summary: summary, step: step, wallTime: wallTime)
  }

  private static func event(summary: ProtobufWriter, step: Int, wallTime: Double) -> [UInt8] {
    var event = ProtobufWriter()
    event.double(1, wallTime)
    event.varint(2, UInt64(bitPattern: Int64(step)))
    event.message(5, summary)
    return event.bytes
  }

  /// TensorFlow's default histogram edges: −1e20 … −1e-12, 0, 1e-12 … 1e20, ×1.1 apart.
  package static let histogramEdges: [Double] = {
    var positive: [Double] = []
    var value = 1e-12
    while value < 1e20 {
      positive.append(value)
      value *= 1.1
    }
    return positive.reversed().map { -$0 } + [0] + positive
  }()

  /// `payload` framed as one TFRecord: its length (UInt64, little-endian), the length's
  /// masked CRC-32C, the payload, and the payload's masked CRC-32C. Cost: O(payload).
  package static func record(_ payload: [UInt8]) -> [UInt8] {
    let length = (0..<8).map { UInt8(truncatingIfNeeded: UInt64(payload.count) >> (8 * $0)) }
    func littleEndian(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
    return length + littleEndian(maskedCRC32C(length)) + payload + littleEndian(maskedCRC32C(payload))
  }

  /// CRC-32C (Castagnoli) of `bytes`, masked as TFRecord stores it:
  /// `((crc >> 15) | (crc << 17)) + 0xa282ead8`. Cost: O(bytes).
  package static func maskedCRC32C(_ bytes: [UInt8]) -> UInt32 {
    let crc = crc32c(bytes)
    return ((crc >> 15) | (crc << 17)) &+ 0xa282_ead8
  }

  /// CRC-32C (Castagnoli, reflected polynomial 0x82f63b78) of `bytes`. Cost: O(bytes).
  package static func crc32c(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xffff_ffff
    for byte in bytes { crc = crcTable[Int((crc ^ UInt32(byte)) & 0xff)] ^ (crc >> 8) }
    return crc ^ 0xffff_ffff
  }

  private static let crcTable: [UInt32] = (0..<256).map { index in
    var value = UInt32(index)
    for _ in 0..<8 { value = value & 1 != 0 ? (value >> 1) ^ 0x82f6_3b78 : value >> 1 }
    return value
  }
}

/// The protobuf wire format, for writing: varints, fixed 32- and 64-bit numbers,
/// length-delimited bytes and nested messages, and packed doubles.
package struct ProtobufWriter {
  package private(set) var bytes: [UInt8] = []

  package init() {}

  mutating func varint(_ field: Int, _ value: UInt64) {
    key(field, wireType: 0)
    rawVarint(value)
  }

  mutating func double(_ field: Int, _ value: Double) {
    key(field, wireType: 1)
    fixed64(value.bitPattern)
  }

  mutating func float(_ field: Int, _ value: Float) {
    key(field, wireType: 5)
    for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value.bitPattern >> shift)) }
  }

  mutating func bytes(_ field: Int, _ value: [UInt8]) {
    key(field, wireType: 2)
    rawVarint(UInt64(value.count))
    bytes += value
  }

  mutating func message(_ field: Int, _ message: ProtobufWriter) { bytes(field, message.bytes) }

  mutating func packedDoubles(_ field: Int, _ values: [Double]) {
    key(field, wireType: 2)
    rawVarint(UInt64(values.count * 8))
    for value in values { fixed64(value.bitPattern) }
  }

  private mutating func key(_ field: Int, wireType: UInt64) { rawVarint(UInt64(field) << 3 | wireType) }

  private mutating func fixed64(_ value: UInt64) {
    for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> shift)) }
  }

  private mutating func rawVarint(_ value: UInt64) {
    var value = value
    while value >= 0x80 {
      bytes.append(UInt8(value & 0x7f) | 0x80)
      value >>= 7
    }
    bytes.append(UInt8(value))
  }
}
