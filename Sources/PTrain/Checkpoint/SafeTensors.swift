/// A safetensors file: an 8-byte little-endian header length, a JSON header mapping
/// each tensor name to `{dtype, shape, data_offsets}` (plus an optional `__metadata__`
/// of string → string), then the tensors' raw little-endian bytes.
///
/// The reader checks everything before trusting it: the header length against the file
/// and a size limit, the JSON, every dtype and shape, and that the tensors' byte ranges
/// lie inside the data, match their shapes, and tile it without overlaps or holes.
public struct SafeTensors: Sendable {
  /// One tensor's description; `bytes` is its byte range within the data section.
  public struct Entry: Sendable, Equatable {
    public let dtype: String
    public let shape: [Int]
    public let bytes: Range<Int>
  }

  /// The largest JSON header accepted: 16 MiB (ptrain writes about 4 KiB).
  package static let maximumHeaderBytes = 16 << 20
  /// The largest file accepted: 1 GiB.
  package static let maximumFileBytes = 1 << 30
  /// Bytes per element of every safetensors dtype.
  static let dtypeSizes: [String: Int] = [
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8,
  ]

  /// Tensor names in file order.
  public let names: [String]
  public let entries: [String: Entry]
  public let metadata: [String: String]
  private let data: ArraySlice<UInt8>

  /// Reads and validates the file at `path`; errors start with the path.
  /// Cost: one read of the file plus O(header).
  public static func read(path: String) throws -> SafeTensors {
    try parse(readFile(path, limit: maximumFileBytes), name: path)
  }

  /// Validates and parses safetensors `bytes`; `name` starts every error message.
  public static func parse(_ bytes: [UInt8], name: String) throws -> SafeTensors {
    do {
      return try SafeTensors(bytes)
    } catch let error as PTrainError {
      throw PTrainError("\(name): not a valid safetensors file: \(error.description)")
    }
  }

  private init(_ bytes: [UInt8]) throws {
    guard bytes.count >= 8 else { throw PTrainError("\(bytes.count) bytes is too short for the 8-byte header length") }
    let declared = bytes[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    guard declared <= UInt64(Self.maximumHeaderBytes) else {
      throw PTrainError("header length \(declared) is over the \(Self.maximumHeaderBytes)-byte limit")
    }
    let headerLength = Int(declared)
    guard headerLength <= bytes.count - 8 else {
      throw PTrainError("header length \(headerLength) runs past the end of the \(bytes.count)-byte file")
    }
    guard headerLength >= 2, bytes[8] == UInt8(ascii: "{") else {
      throw PTrainError("the header does not start with a JSON object")
    }
    let header = try JSONParser.parse(Array(bytes[8..<8 + headerLength]))
    guard case .object(let members) = header else { throw PTrainError("the header is not a JSON object") }
    data = bytes[(8 + headerLength)...]
    var names: [String] = []
    var entries: [String: Entry] = [:]
    var metadata: [String: String] = [:]
    for (key, value) in members {  // the parser has refused repeated keys
      if key == "__metadata__" {
        metadata = try Self.metadata(value)
      } else {
        entries[key] = try Self.entry(key, value, dataLength: data.count)
        names.append(key)
      }
    }
    var end = 0
    for entry in entries.values.sorted(by: {
      ($0.bytes.lowerBound, $0.bytes.upperBound) < ($1.bytes.lowerBound, $1.bytes.upperBound)
    }) {
      guard entry.bytes.lowerBound == end else {
        throw PTrainError(
          entry.bytes.lowerBound < end
            ? "tensors overlap at data byte \(entry.bytes.lowerBound)" : "a hole in the data at byte \(end)")
      }
      end = entry.bytes.upperBound
    }
    guard end == data.count else {
      throw PTrainError("the tensors cover \(end) data bytes but the file holds \(data.count)")
    }
    self.names = names
    self.entries = entries
    self.metadata = metadata
  }

  private static func metadata(_ value: JSONValue) throws -> [String: String] {
    guard case .object(let members) = value else { throw PTrainError("__metadata__ is not an object") }
    var result: [String: String] = [:]
    for (key, value) in members {
      guard case .string(let text) = value else { throw PTrainError("__metadata__.\(key) is not a string") }
      result[key] = text
    }
    return result
  }

  private static func entry(_ name: String, _ value: JSONValue, dataLength: Int) throws -> Entry {
    guard case .object(let fields) = value else { throw PTrainError("\(name) is not an object") }
    func field(_ key: String) throws -> JSONValue {
      guard let found = fields.first(where: { $0.key == key }) else { throw PTrainError("\(name) has no \(key)") }
      return found.value
    }
    guard case .string(let dtype) = try field("dtype"), let size = dtypeSizes[dtype] else {
      throw PTrainError("\(name) has an unknown dtype")
    }
    guard case .array(let dimensions) = try field("shape"), dimensions.count <= 8 else {
      throw PTrainError("\(name): shape is not an array of at most 8 dimensions")
    }
    var shape: [Int] = []
    var elements = 1
    for dimension in dimensions {
      guard let extent = dimension.nonNegativeInt else {
        throw PTrainError("\(name): shape holds something other than a non-negative integer")
      }
      let product = elements.multipliedReportingOverflow(by: extent)
      guard !product.overflow, product.partialValue <= dataLength else {
        throw PTrainError("\(name): shape \(shape + [extent]) holds more elements than the file has bytes")
      }
      elements = product.partialValue
      shape.append(extent)
    }
    guard case .array(let offsets) = try field("data_offsets"), offsets.count == 2,
      let begin = offsets[0].nonNegativeInt, let end = offsets[1].nonNegativeInt
    else { throw PTrainError("\(name): data_offsets is not a pair of non-negative integers") }
    guard begin <= end, end <= dataLength else {
      throw PTrainError("\(name): data_offsets [\(begin), \(end)] lie outside the \(dataLength) data bytes")
    }
    guard end - begin == elements * size else {
      throw PTrainError("\(name): \(end - begin) bytes do not hold shape \(shape) of \(dtype)")
    }
    return Entry(dtype: dtype, shape: shape, bytes: begin..<end)
  }

  /// The values of an F32 tensor in file order, or nil if there is no tensor `name`.
  /// Throws if it is not F32. Cost: O(elements).
  public func floats(_ name: String) throws -> [Float]? {
    guard let entry = entries[name] else { return nil }
    guard entry.dtype == "F32" else { throw PTrainError("\(name) is \(entry.dtype); ptrain needs F32") }
    let start = data.startIndex + entry.bytes.lowerBound
    var values = [Float](repeating: 0, count: entry.bytes.count / 4)
    data.withUnsafeBytes { source in
      values.withUnsafeMutableBytes { target in
        target.copyMemory(
          from: UnsafeRawBufferPointer(rebasing: source[(start - data.startIndex)...].prefix(target.count)))
      }
    }
    #if _endian(big)
      for index in values.indices { values[index] = Float(bitPattern: UInt32(littleEndian: values[index].bitPattern)) }
    #endif
    return values
  }

  /// The values of an I64 tensor in file order (such as PyTorch's `num_batches_tracked`,
  /// a scalar), or nil if there is no tensor `name`. Throws if it is not I64.
  /// Cost: O(elements).
  public func integers(_ name: String) throws -> [Int64]? {
    guard let entry = entries[name] else { return nil }
    guard entry.dtype == "I64" else { throw PTrainError("\(name) is \(entry.dtype); ptrain needs I64") }
    let start = data.startIndex + entry.bytes.lowerBound
    return (0..<(entry.bytes.count / 8)).map { element in
      (0..<8).reduce(Int64(0)) { $0 | Int64(data[start + 8 * element + $1]) << (8 * Int64($1)) }
    }
  }

  /// Encodes F32 tensors, then I64 tensors, and string metadata as safetensors bytes,
  /// tensors in the given order, the header padded with spaces so that the data starts
  /// 8-byte aligned. Cost: O(total elements).
  public static func encode(
    tensors: [(name: String, shape: [Int], values: [Float])],
    integers: [(name: String, shape: [Int], values: [Int64])] = [], metadata: [String: String]
  ) -> [UInt8] {
    var fields: [String] = []
    if !metadata.isEmpty {
      let pairs = metadata.sorted { $0.key < $1.key }.map {
        JSONValue.quoted($0.key) + ":" + JSONValue.quoted($0.value)
      }
      fields.append("\"__metadata__\":{" + pairs.joined(separator: ",") + "}")
    }
    var offset = 0
    func describe(_ name: String, _ dtype: String, _ shape: [Int], bytes: Int) {
      let end = offset + bytes
      fields.append(
        JSONValue.quoted(name) + ":{\"dtype\":\"\(dtype)\",\"shape\":["
          + shape.map(String.init).joined(separator: ",") + "],\"data_offsets\":[\(offset),\(end)]}")
      offset = end
    }
    for tensor in tensors {
      precondition(tensor.shape.reduce(1, *) == tensor.values.count, "\(tensor.name): shape does not fit its values")
      describe(tensor.name, "F32", tensor.shape, bytes: 4 * tensor.values.count)
    }
    for tensor in integers {
      precondition(tensor.shape.reduce(1, *) == tensor.values.count, "\(tensor.name): shape does not fit its values")
      describe(tensor.name, "I64", tensor.shape, bytes: 8 * tensor.values.count)
    }
    var header = Array(("{" + fields.joined(separator: ",") + "}").utf8)
    header += [UInt8](repeating: 0x20, count: (8 - header.count % 8) % 8)
    var bytes: [UInt8] = []
    bytes.reserveCapacity(8 + header.count + offset)
    for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: header.count >> shift)) }
    bytes += header
    for tensor in tensors {
      #if _endian(big)
        let littleEndian = tensor.values.map { Float(bitPattern: $0.bitPattern.littleEndian) }
      #else
        let littleEndian = tensor.values
      #endif
      littleEndian.withUnsafeBytes { bytes.append(contentsOf: $0) }
    }
    for tensor in integers {
      for value in tensor.values {
        for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> Int64(shift))) }
      }
    }
    return bytes
  }
}
