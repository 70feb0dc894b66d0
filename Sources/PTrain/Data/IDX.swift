#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A decoded IDX file of unsigned bytes: the format of MNIST and Fashion-MNIST.
///
/// An IDX file is a big-endian magic number `00 00 08 <dims>`, one big-endian UInt32
/// per dimension, then the bytes in row-major order. The reader validates all of it
/// and refuses declared sizes that the input cannot hold before allocating anything.
package struct IDXFile: Sendable {
  /// The dimensions, outermost first (count, rows, columns for images).
  package let dimensions: [Int]
  /// The payload.
  package let bytes: [UInt8]

  /// The largest payload the reader will allocate: 1 GiB.
  package static let maximumBytes = 1 << 30
  /// Deflate cannot expand data by more than about 1032:1.
  static let maximumInflateRatio = 1032

  /// Reads and validates the file at `path`, raw or gzip-compressed, expecting
  /// `dimensionCount` dimensions. Cost: one read of the file plus O(payload).
  package static func read(path: String, dimensionCount: Int) throws -> IDXFile {
    try decode(readFile(path, limit: maximumBytes), name: path, dimensionCount: dimensionCount)
  }

  /// Decodes IDX bytes (raw or gzip-compressed) named `name` in errors.
  package static func decode(_ input: [UInt8], name: String, dimensionCount: Int) throws -> IDXFile {
    let stream = try ByteStream(bytes: input, name: name)
    var header = [UInt8](repeating: 0, count: 4 + 4 * dimensionCount)
    let magicRead = try header.withUnsafeMutableBytes {
      try stream.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<4]))
    }
    guard magicRead == 4 else {
      throw PTrainError("\(name): truncated: \(magicRead) bytes, too short for an IDX header")
    }
    guard header[0] == 0, header[1] == 0, header[2] == 0x08, Int(header[3]) == dimensionCount else {
      let magic = header[0..<4].map { String(format2: $0) }.joined()
      throw PTrainError(
        "\(name): not an IDX file of unsigned bytes with \(dimensionCount) dimension(s) (magic 0x\(magic), expected 0x000008\(String(format2: UInt8(dimensionCount))))"
      )
    }
    let dimensionsRead = try header.withUnsafeMutableBytes {
      try stream.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[4...]))
    }
    guard dimensionsRead == 4 * dimensionCount else {
      throw PTrainError("\(name): truncated: the IDX header needs \(header.count) bytes, found \(4 + dimensionsRead)")
    }
    var dimensions: [Int] = []
    var total = 1
    for d in 0..<dimensionCount {
      let offset = 4 + 4 * d
      let value = header[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) }
      dimensions.append(value)
      total = total.multipliedReportingOverflow(by: max(value, 1)).partialValue
      if total > maximumBytes || value == 0 {
        throw PTrainError(
          "\(name): absurd dimensions \(dimensions.map(String.init).joined(separator: "×")): the limit is \(maximumBytes) bytes and every dimension must be positive"
        )
      }
    }
    let available =
      stream.isCompressed
      ? input.count * maximumInflateRatio : input.count - header.count
    guard total <= available else {
      throw PTrainError(
        "\(name): truncated: the header declares \(total) bytes of data but the file can hold at most \(available)"
      )
    }
    // Reserve the whole payload when the input plausibly holds it: raw data (checked
    // above), or a compression ratio of at most 64:1 (MNIST's is 5:1). Beyond that, memory
    // comes as data actually arrives, doubling up to `total`, so that a small file that
    // merely claims a huge size never gets a huge allocation.
    var bytes: [UInt8] = []
    let plausible = !stream.isCompressed || total <= 64 * input.count
    bytes.reserveCapacity(plausible ? total : min(total, 1 << 24))
    var chunk = [UInt8](repeating: 0, count: min(total, 1 << 16))
    while bytes.count < total {
      let wanted = min(chunk.count, total - bytes.count)
      if bytes.count + wanted > bytes.capacity { bytes.reserveCapacity(min(total, 2 * bytes.capacity)) }
      let read = try chunk.withUnsafeMutableBytes {
        try stream.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<wanted]))
      }
      if read == 0 { break }
      bytes.append(contentsOf: chunk[0..<read])
    }
    guard bytes.count == total else {
      throw PTrainError("\(name): truncated: expected \(total) bytes of data, found \(bytes.count)")
    }
    guard try stream.atEnd() else {
      throw PTrainError("\(name): unexpected bytes after the \(total) bytes of data")
    }
    return IDXFile(dimensions: dimensions, bytes: bytes)
  }
}
