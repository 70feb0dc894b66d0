#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// CIFAR-10's binary version, as its authors distribute it (`cifar-10-binary.tar.gz` from
/// https://www.cs.toronto.edu/~kriz/cifar.html): five training files of 10,000 records and
/// one test file, each record a label byte then 3,072 bytes of a 32×32 RGB image stored
/// channel by channel (all red, all green, all blue). ptrain keeps images channels-last.
package enum CIFAR10 {
  package static let trainingFiles = (1...5).map { "data_batch_\($0).bin" }
  package static let testFile = "test_batch.bin"
  package static let shape = ImageShape(height: 32, width: 32, channels: 3)
  /// Bytes per record: a label and a 32×32×3 image.
  package static let recordBytes = 1 + 32 * 32 * 3

  /// Whether `directory` holds CIFAR-10's binary files (any of them).
  package static func isPresent(in directory: String) -> Bool {
    (trainingFiles + [testFile]).contains { access(directory + "/" + $0, F_OK) == 0 }
  }

  /// Reads all six files of `directory`, each decoded straight onto the end of its
  /// split's arrays, so that only one file's raw bytes are held at a time. Cost: one read
  /// of 180 MB and a reordering.
  package static func load(directory: String, name: String) throws -> Dataset {
    func read(_ files: [String]) throws -> LabeledImages {
      var pixels: [UInt8] = []
      var labels: [UInt8] = []
      // Room for every record at once: growing the arrays file by file would copy them.
      let records = files.reduce(0) { total, file in
        var info = stat()
        return total + (stat(directory + "/" + file, &info) == 0 ? Int(info.st_size) / recordBytes : 0)
      }
      pixels.reserveCapacity(records * shape.count)
      labels.reserveCapacity(records)
      for file in files {
        let path = directory + "/" + file
        guard access(path, F_OK) == 0 else {
          try Dataset.refuseBrokenLink(path)
          throw PTrainError(
            "\(directory): \(file) is missing; CIFAR-10 needs \((trainingFiles + [testFile]).joined(separator: ", "))")
        }
        try decode(readFile(path, limit: 1 << 30), name: path, appendingTo: &pixels, labels: &labels)
      }
      return try LabeledImages(pixels: pixels, labels: labels, classes: 10, shape: shape)
    }
    return try Dataset(
      name: name, directory: directory, train: try read(trainingFiles), test: try read([testFile]),
      classNames: Dataset.cifar10ClassNames)
  }

  /// Decodes the records of one file, named `name` in errors: its size must be a whole,
  /// non-zero number of 3,073-byte records and every label below 10. Cost: O(bytes).
  package static func decode(_ bytes: [UInt8], name: String) throws -> LabeledImages {
    var pixels: [UInt8] = []
    var labels: [UInt8] = []
    try decode(bytes, name: name, appendingTo: &pixels, labels: &labels)
    return try LabeledImages(pixels: pixels, labels: labels, classes: 10, shape: shape)
  }

  /// Decodes the records of `bytes` (channel-planar) onto the ends of `pixels`
  /// (channels-last) and `labels`. Cost: O(bytes).
  static func decode(_ bytes: [UInt8], name: String, appendingTo pixels: inout [UInt8], labels: inout [UInt8]) throws {
    guard !bytes.isEmpty, bytes.count % recordBytes == 0 else {
      throw PTrainError(
        "\(name): \(bytes.count) bytes is not a whole number of \(recordBytes)-byte CIFAR-10 records (a label and 32x32x3 pixels)"
      )
    }
    let count = bytes.count / recordBytes
    let plane = 32 * 32
    for record in 0..<count {
      let start = record * recordBytes
      guard bytes[start] < 10 else {
        throw PTrainError("\(name): label \(bytes[start]) of record \(record) is not below the 10 classes")
      }
      labels.append(bytes[start])
      for p in 0..<plane {
        for c in 0..<3 { pixels.append(bytes[start + 1 + c * plane + p]) }
      }
    }
  }
}
