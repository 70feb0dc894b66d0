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

  /// Whether `directory` holds CIFAR-10's binary files (any of them).
  package static func isPresent(in directory: String) throws -> Bool {
    try (trainingFiles + [testFile]).contains { try Dataset.isPresent(directory + "/" + $0) }
  }

  /// Opens all six files of `directory` (only the test file with `testOnly`, the training
  /// split then empty) and checks them (sizes and labels); the images stay in the files,
  /// which training reads a batch at a time (see `ImageRecordFiles`), so a run holds 60 KB
  /// of labels instead of 184 MB of images. Cost: one read of 180 MB.
  package static func load(directory: String, name: String, testOnly: Bool = false) throws -> Dataset {
    func open(_ files: [String]) throws -> LabeledImages {
      let paths = try files.map { file in
        let path = directory + "/" + file
        guard try Dataset.isPresent(path) else {
          try Dataset.refuseBrokenLink(path)
          throw PTrainError(
            "\(directory): \(file) is missing; CIFAR-10 needs \((trainingFiles + [testFile]).joined(separator: ", "))")
        }
        return path
      }
      let (records, labels) = try ImageRecordFiles.opening(paths: paths, shape: shape, classes: 10)
      return LabeledImages(files: records, labels: labels, classes: 10)
    }
    let test = try open([testFile])
    return try Dataset(
      name: name, directory: directory, train: testOnly ? test.prefix(0) : try open(trainingFiles), test: test,
      classNames: Dataset.cifar10ClassNames)
  }
}
