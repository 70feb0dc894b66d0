import CImageCodecs

/// Decodes PNG and JPEG files with libpng and libjpeg-turbo (through `CImageCodecs`) and
/// resizes them to a model's input. The channel rule is Pillow's `convert("L")` or
/// `convert("RGB")`, as torchvision's `ImageFolder` loader applies it: alpha is dropped,
/// a palette is looked up, gray is repeated into RGB, RGB becomes gray as
/// (19595 R + 38470 G + 7471 B + 32768) >> 16, and 16-bit samples keep their high byte.
package enum ImageDecoder {
  /// The largest image file read, in bytes.
  package static let maximumFileBytes = 1 << 30
  /// The file name endings (lower-cased) read as images.
  package static let fileExtensions: Set<String> = ["png", "jpg", "jpeg"]

  /// What an image's header says.
  package struct Header: Equatable, Sendable {
    package let width: Int, height: Int
    /// Whether it holds gray levels only (a gray or gray+alpha PNG, a grayscale JPEG).
    package let gray: Bool
  }

  /// Whether `name`'s extension is one of `fileExtensions`, in any case.
  package static func hasImageExtension(_ name: String) -> Bool {
    guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return false }
    return fileExtensions.contains(name[name.index(after: dot)...].lowercased())
  }

  /// The header of the PNG or JPEG image in `bytes`; `path` starts the error of a file
  /// that is neither, or is broken. Cost: parsing the header.
  package static func header(of bytes: [UInt8], path: String) throws -> Header {
    var header = ptrain_image_header()
    try call(path) { error, size in ptrain_image_read_header(bytes, bytes.count, &header, error, size) }
    return Header(width: Int(header.width), height: Int(header.height), gray: header.gray != 0)
  }

  /// Decodes the image in `bytes` (with `header`) to `shape`'s channels and resizes it to
  /// `shape` (see `ImageResizing`) into `target`, `shape.count` bytes. Throws, naming
  /// `path`, for a truncated or corrupt image. Cost: the decode, plus the resize when the
  /// sizes differ.
  package static func decode(
    _ bytes: [UInt8], header: Header, path: String, into target: UnsafeMutablePointer<UInt8>, shape: ImageShape
  ) throws {
    var raw = ptrain_image_header(width: Int32(header.width), height: Int32(header.height), gray: header.gray ? 1 : 0)
    let native = ImageShape(height: header.height, width: header.width, channels: shape.channels)
    if native == shape {
      try call(path) { error, size in
        ptrain_image_decode(bytes, bytes.count, &raw, Int32(shape.channels), target, error, size)
      }
      return
    }
    var decoded = [UInt8](repeating: 0, count: native.count)
    try decoded.withUnsafeMutableBufferPointer { decoded in
      try call(path) { error, size in
        ptrain_image_decode(bytes, bytes.count, &raw, Int32(shape.channels), decoded.baseAddress!, error, size)
      }
      ImageResizing.resize(decoded.baseAddress!, from: native, into: target, to: shape)
    }
  }

  /// Reads the image file at `path` and decodes it into `target` as `decode` does.
  /// Cost: one read of the file and the decode.
  package static func load(path: String, into target: UnsafeMutablePointer<UInt8>, shape: ImageShape) throws {
    let bytes = try readFile(path, limit: maximumFileBytes)
    try decode(bytes, header: try header(of: bytes, path: path), path: path, into: target, shape: shape)
  }

  /// The longest message the C side writes.
  private static let messageBytes = 512

  /// Runs a C call that returns 0 or -1 with a message, throwing `path: message`.
  private static func call(_ path: String, _ body: (UnsafeMutablePointer<CChar>, Int) -> Int32) throws {
    var message = [CChar](repeating: 0, count: messageBytes)
    let status = message.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
    guard status == 0 else {
      let text = message.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
      throw PTrainError("\(path): \(text)")
    }
  }
}
