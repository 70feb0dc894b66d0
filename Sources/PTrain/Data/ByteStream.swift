import CZlib

/// Sequential reads from the bytes of a file that may be gzip-compressed.
///
/// Gzip input (detected by its magic `1f 8b`) is inflated through the system zlib as it
/// is read, so nothing larger than what the caller asks for is ever allocated. Several
/// gzip members in a row decode as one stream; other bytes after the last are an error.
final class ByteStream {
  private let bytes: [UInt8]
  private let name: String
  private var position = 0
  private var stream: UnsafeMutablePointer<z_stream>?
  private var finished = false

  /// Whether the input is gzip-compressed.
  var isCompressed: Bool { stream != nil }
  /// The number of input (possibly compressed) bytes.
  var inputCount: Int { bytes.count }

  init(bytes: [UInt8], name: String) throws {
    self.bytes = bytes
    self.name = name
    guard bytes.count >= 2, bytes[0] == 0x1f, bytes[1] == 0x8b else { return }
    let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
    stream.initialize(to: z_stream())
    // 16 + 15: a gzip wrapper around a window of up to 32 KiB.
    let status = inflateInit2_(stream, 16 + 15, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
    guard status == Z_OK else {
      stream.deallocate()
      throw PTrainError("\(name): zlib could not start inflating (error \(status))")
    }
    self.stream = stream
  }

  deinit {
    if let stream {
      inflateEnd(stream)
      stream.deallocate()
    }
  }

  /// Fills `buffer` completely and returns the number of bytes read, which is less than
  /// `buffer.count` only when the input ends first. Cost: O(bytes produced).
  func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
    guard buffer.count > 0 else { return 0 }
    guard let stream else {
      let count = min(buffer.count, bytes.count - position)
      guard count > 0 else { return 0 }
      bytes.withUnsafeBytes { source in
        buffer.baseAddress!.copyMemory(from: source.baseAddress! + position, byteCount: count)
      }
      position += count
      return count
    }
    if finished { return 0 }
    return try bytes.withUnsafeBytes { source -> Int in
      stream.pointee.next_out = buffer.baseAddress!.assumingMemoryBound(to: Bytef.self)
      stream.pointee.avail_out = UInt32(buffer.count)
      stream.pointee.next_in = UnsafeMutablePointer(
        mutating: source.baseAddress!.assumingMemoryBound(to: Bytef.self) + position)
      stream.pointee.avail_in = UInt32(bytes.count - position)
      while stream.pointee.avail_out > 0 {
        let before = stream.pointee.avail_in
        let status = inflate(stream, Z_NO_FLUSH)
        position += Int(before - stream.pointee.avail_in)
        if status == Z_STREAM_END {
          // A gzip file may hold several members back to back (`cat a.gz b.gz`), as
          // `gzip -d` accepts; anything else after a member is refused.
          guard position < bytes.count else {
            finished = true
            break
          }
          guard bytes.count - position >= 2, source[position] == 0x1f, source[position + 1] == 0x8b else {
            throw PTrainError(
              "\(name): unexpected bytes after the gzip data (\(bytes.count - position) bytes at offset \(position))")
          }
          inflateReset(stream)
          continue
        }
        if status == Z_BUF_ERROR && stream.pointee.avail_in == 0 {
          throw PTrainError("\(name): the gzip data is truncated")
        }
        guard status == Z_OK else {
          throw PTrainError("\(name): the gzip data is corrupt (zlib error \(status))")
        }
      }
      return buffer.count - Int(stream.pointee.avail_out)
    }
  }

  /// Whether every input byte has been consumed (raw) or the last gzip member has ended
  /// with the input. Throws when bytes that are not a gzip member follow the data.
  func atEnd() throws -> Bool {
    if stream == nil { return position == bytes.count }
    var probe: UInt8 = 0
    return try withUnsafeMutableBytes(of: &probe) { try read(into: $0) } == 0
  }
}
