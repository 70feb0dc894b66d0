import CTurboJPEG
import CZlib
import Foundation
import PTrain

/// Writes the PNG and JPEG files the image tests read: PNGs chunk by chunk (every colour
/// type, bit depth and palette, exactly as asked), JPEGs with TurboJPEG.
enum ImageFixtures {
  /// PNG colour types.
  enum ColorType: UInt8 {
    case gray = 0, rgb = 2, palette = 3, grayAlpha = 4, rgba = 6

    var samples: Int { [0: 1, 2: 3, 3: 1, 4: 2, 6: 4][rawValue]! }
  }

  /// A PNG of `width` × `height` pixels whose samples (`bitDepth` bits each, big-endian
  /// for 16; for a palette, the indices) are `samples`, row after row, unfiltered.
  static func png(
    width: Int, height: Int, color: ColorType, bitDepth: Int = 8, samples: [Int], palette: [UInt8]? = nil
  ) -> [UInt8] {
    var raw = [UInt8]()
    let perRow = width * color.samples
    for y in 0..<height {
      raw.append(0)  // filter type None
      var bits = 0
      var pending = 0
      for sample in samples[(y * perRow)..<((y + 1) * perRow)] {
        switch bitDepth {
        case 16: raw += [UInt8(sample >> 8), UInt8(sample & 0xFF)]
        case 8: raw.append(UInt8(sample))
        default:
          pending = (pending << bitDepth) | sample
          bits += bitDepth
          if bits == 8 {
            raw.append(UInt8(pending))
            (pending, bits) = (0, 0)
          }
        }
      }
      if bits > 0 { raw.append(UInt8(pending << (8 - bits))) }
    }
    var header = [UInt8]()
    for value in [UInt32(width), UInt32(height)] { header += bigEndian(value) }
    header += [UInt8(bitDepth), color.rawValue, 0, 0, 0]
    var file: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    file += chunk("IHDR", header)
    if let palette { file += chunk("PLTE", palette) }
    file += chunk("IDAT", deflate(raw))
    file += chunk("IEND", [])
    return file
  }

  /// A JPEG of `pixels` (1 or 3 channels), at quality 95 without chroma subsampling.
  static func jpeg(width: Int, height: Int, channels: Int, pixels: [UInt8]) -> [UInt8] {
    let handle = tjInitCompress()!
    defer { tjDestroy(handle) }
    var buffer: UnsafeMutablePointer<UInt8>?
    var size: UInt = 0
    let format = channels == 1 ? TJPF_GRAY : TJPF_RGB
    let sampling = channels == 1 ? TJSAMP_GRAY : TJSAMP_444
    let status = tjCompress2(
      handle, pixels, Int32(width), 0, Int32(height), Int32(format.rawValue), &buffer, &size,
      Int32(sampling.rawValue), 95, 0)
    precondition(status == 0, String(cString: tjGetErrorStr2(handle)))
    defer { tjFree(buffer) }
    return Array(UnsafeBufferPointer(start: buffer, count: Int(size)))
  }

  /// A PNG whose header claims `width` × `height` pixels, with one byte of image data:
  /// enough for a header read.
  static func pngHeader(width: Int, height: Int) -> [UInt8] {
    var header = bigEndian(UInt32(width)) + bigEndian(UInt32(height))
    header += [8, ColorType.gray.rawValue, 0, 0, 0]
    return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", header) + chunk("IDAT", deflate([0]))
      + chunk("IEND", [])
  }

  /// Writes `bytes` to `url`.
  static func write(_ bytes: [UInt8], to url: URL) throws {
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try Data(bytes).write(to: url)
  }

  /// An 8-bit RGB or gray PNG of `pixels`.
  static func png(width: Int, height: Int, channels: Int, pixels: [UInt8]) -> [UInt8] {
    png(width: width, height: height, color: channels == 1 ? .gray : .rgb, samples: pixels.map(Int.init))
  }

  private static func bigEndian(_ value: UInt32) -> [UInt8] {
    [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
  }

  private static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
    let typed = Array(type.utf8) + data
    let crc = typed.withUnsafeBufferPointer { UInt32(crc32(0, $0.baseAddress, UInt32($0.count))) }
    return bigEndian(UInt32(data.count)) + typed + bigEndian(crc)
  }

  private static func deflate(_ data: [UInt8]) -> [UInt8] {
    var size = compressBound(UInt(data.count))
    var output = [UInt8](repeating: 0, count: Int(size))
    let status = compress(&output, &size, data, UInt(data.count))
    precondition(status == Z_OK, "zlib compress failed: \(status)")
    return Array(output[..<Int(size)])
  }
}
