#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Images that stay in their files and are read a few at a time: CIFAR-10's records, each
/// a label byte then an image stored channel by channel. The files are opened and checked
/// once (`opening(paths:…)`); afterwards `read` fetches records with `pread`, from any thread,
/// so a training run holds a batch's bytes, not the dataset's.
package final class ImageRecordFiles: Sendable {
  /// The files in order; record `i` of the whole is record `i − firstRecord[f]` of file `f`.
  let paths: [String]
  let descriptors: [Int32]
  let firstRecord: [Int]
  package let shape: ImageShape
  /// The label byte and the image: `1 + shape.count`.
  var recordBytes: Int { 1 + shape.count }

  /// Opens `paths` (regular files, each a whole, non-zero number of records) and reads
  /// them once to check every label and to return them all, in order. `classes` bounds
  /// the labels. Errors name the file and, for a label, the record. Cost: one read of the
  /// files, a chunk at a time.
  package static func opening(paths: [String], shape: ImageShape, classes: Int) throws -> (ImageRecordFiles, [UInt8]) {
    let recordBytes = 1 + shape.count
    var descriptors: [Int32] = []
    var firstRecord: [Int] = []
    var labels: [UInt8] = []
    var opened = false
    defer { if !opened { for descriptor in descriptors { close(descriptor) } } }
    for path in paths {
      let descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
      guard descriptor >= 0 else { throw PTrainError("\(path): \(errnoText())") }
      descriptors.append(descriptor)
      var info = stat()
      guard fstat(descriptor, &info) == 0 else { throw PTrainError("\(path): \(errnoText())") }
      guard (info.st_mode & S_IFMT) == S_IFREG else {
        throw PTrainError("\(path): is \(fileKind(info.st_mode)), not a regular file")
      }
      let size = Int(info.st_size)
      guard size > 0, size % recordBytes == 0 else {
        throw PTrainError(
          "\(path): \(size) bytes is not a whole number of \(recordBytes)-byte CIFAR-10 records (a label and \(shape) pixels)"
        )
      }
      firstRecord.append(labels.count)
      let records = size / recordBytes
      labels.reserveCapacity(labels.count + records)
      // About 1 MB at a time.
      let chunkRecords = max(1, (1 << 20) / recordBytes)
      var chunk = [UInt8](repeating: 0, count: chunkRecords * recordBytes)
      for start in stride(from: 0, to: records, by: chunkRecords) {
        let count = min(chunkRecords, records - start)
        try chunk.withUnsafeMutableBytes { buffer in
          try readExactly(
            descriptor, into: buffer.baseAddress!, count: count * recordBytes, at: start * recordBytes, path: path)
        }
        for record in 0..<count {
          let label = chunk[record * recordBytes]
          guard Int(label) < classes else {
            throw PTrainError("\(path): label \(label) of record \(start + record) is not below the \(classes) classes")
          }
          labels.append(label)
        }
      }
    }
    opened = true
    return (ImageRecordFiles(paths: paths, descriptors: descriptors, firstRecord: firstRecord, shape: shape), labels)
  }

  private init(paths: [String], descriptors: [Int32], firstRecord: [Int], shape: ImageShape) {
    self.paths = paths
    self.descriptors = descriptors
    self.firstRecord = firstRecord
    self.shape = shape
  }

  deinit {
    for descriptor in descriptors { close(descriptor) }
  }

  /// Reads record `index` into `image` (`shape.count` bytes, channels last), using
  /// `record` (`recordBytes`) as room for the raw bytes. Throws when the file has shrunk
  /// or its label is no longer `label`: the file changed after it was opened.
  /// Cost: one `pread` and a reordering.
  package func read(
    _ index: Int, label: UInt8, into image: UnsafeMutablePointer<UInt8>, record: UnsafeMutablePointer<UInt8>
  ) throws {
    var file = firstRecord.count - 1
    while firstRecord[file] > index { file -= 1 }
    let path = paths[file]
    let local = index - firstRecord[file]
    try Self.readExactly(
      descriptors[file], into: UnsafeMutableRawPointer(record), count: recordBytes, at: local * recordBytes, path: path)
    guard record[0] == label else {
      throw PTrainError("\(path): record \(local) changed while in use (label \(label), now \(record[0]))")
    }
    let plane = shape.height * shape.width
    let channels = shape.channels
    let pixels = record + 1
    for p in 0..<plane {
      for c in 0..<channels { image[p * channels + c] = pixels[c * plane + p] }
    }
  }

  /// Reads `count` bytes at `offset` of `descriptor` (the file `path`) into `buffer`,
  /// throwing when it ends early. Cost: one `pread`, more if interrupted.
  static func readExactly(
    _ descriptor: Int32, into buffer: UnsafeMutableRawPointer, count: Int, at offset: Int, path: String
  ) throws {
    var done = 0
    while done < count {
      let got = pread(descriptor, buffer + done, count - done, off_t(offset + done))
      if got < 0 && errno == EINTR { continue }
      guard got > 0 else {
        throw PTrainError(
          "\(path): read \(done) of \(count) bytes at \(offset): \(got < 0 ? errnoText() : "the file shrank")")
      }
      done += got
    }
  }
}
