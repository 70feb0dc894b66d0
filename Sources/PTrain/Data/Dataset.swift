import CMNIST

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Labelled images of one shape, kept as bytes (height × width × channels, channels
/// interleaved); the trainer standardises each image as it feeds it. The bytes are in
/// memory, or, for CIFAR-10's files, stay in the files and are read a batch at a time.
public struct LabeledImages: Sendable {
  /// Where the images' bytes are.
  enum Storage: Sendable {
    /// `count` images of `shape.count` bytes each.
    case memory([UInt8])
    /// Records of these files: image `i` is record `records[i]`, or record `i` when
    /// `records` is nil.
    case files(ImageRecordFiles, records: [Int]?)
  }
  let storage: Storage
  /// One label per image, each below `classes`.
  public let labels: [UInt8]
  public let classes: Int
  public let shape: ImageShape
  public var count: Int { labels.count }

  /// Pairs IDX images (any height and width, one channel) with IDX labels, validating
  /// counts and labels. `name` appears in errors.
  package init(images: IDXFile, labels: IDXFile, classes: Int = 10, name: String) throws {
    let imageCount = images.dimensions[0]
    let labelCount = labels.dimensions[0]
    guard imageCount == labelCount else {
      throw PTrainError("\(name): \(imageCount) images but \(labelCount) labels")
    }
    try Self.requireLabels(labels.bytes, below: classes, name: name)
    storage = .memory(images.bytes)
    self.labels = labels.bytes
    self.classes = classes
    shape = ImageShape(height: images.dimensions[1], width: images.dimensions[2], channels: 1)
  }

  /// Wraps bytes already in memory: `pixels.count` must be `labels.count × shape.count`.
  public init(
    pixels: [UInt8], labels: [UInt8], classes: Int = 10,
    shape: ImageShape = ImageShape(height: 28, width: 28, channels: 1)
  ) throws {
    guard pixels.count == labels.count * shape.count else {
      throw PTrainError("\(pixels.count) pixel bytes do not make \(labels.count) images of \(shape)")
    }
    try Self.requireLabels(labels, below: classes, name: nil)
    storage = .memory(pixels)
    self.labels = labels
    self.classes = classes
    self.shape = shape
  }

  init(storage: Storage, labels: [UInt8], classes: Int, shape: ImageShape) {
    self.storage = storage
    self.labels = labels
    self.classes = classes
    self.shape = shape
  }

  /// The records of `files`, whose labels (checked when they were opened) are `labels`.
  package init(files: ImageRecordFiles, labels: [UInt8], classes: Int) {
    storage = .files(files, records: nil)
    self.labels = labels
    self.classes = classes
    shape = files.shape
  }

  /// Every image's bytes, `count × shape.count`, image after image. Images kept in their
  /// files are read (and the read can fail). Cost: O(count · shape.count).
  public var pixels: [UInt8] {
    get throws {
      switch storage {
      case .memory(let bytes): return bytes
      case .files:
        var bytes = [UInt8](repeating: 0, count: count * shape.count)
        try bytes.withUnsafeMutableBufferPointer { try copyImages(0..<count, into: $0.baseAddress!) }
        return bytes
      }
    }
  }

  /// The images' bytes when they are in memory; nil when they stay in their files.
  package var bytesInMemory: [UInt8]? {
    if case .memory(let bytes) = storage { return bytes }
    return nil
  }

  /// Copies the images at `indices`, in that order, into `destination`, `shape.count`
  /// bytes each. Throws when a file the images are kept in has changed since it was
  /// opened. Cost: O(indices · shape.count), one `pread` per image kept in a file.
  package func copyImages(
    _ indices: some Sequence<some BinaryInteger>, into destination: UnsafeMutablePointer<UInt8>
  ) throws {
    let bytes = shape.count
    switch storage {
    case .memory(let pixels):
      pixels.withUnsafeBufferPointer { pixels in
        for (n, index) in indices.enumerated() {
          (destination + n * bytes).update(from: pixels.baseAddress! + Int(index) * bytes, count: bytes)
        }
      }
    case .files(let files, let records):
      try withUnsafeTemporaryAllocation(of: UInt8.self, capacity: files.recordBytes) { record in
        for (n, index) in indices.enumerated() {
          try files.read(
            records?[Int(index)] ?? Int(index), label: labels[Int(index)], into: destination + n * bytes,
            record: record.baseAddress!)
        }
      }
    }
  }

  /// Throws, naming `name` (when given), the first label and its index, if any label is
  /// not below `classes`. Cost: O(labels).
  package static func requireLabels(_ labels: [UInt8], below classes: Int, name: String?) throws {
    guard let bad = labels.firstIndex(where: { Int($0) >= classes }) else { return }
    throw PTrainError(
      (name.map { "\($0): " } ?? "") + "label \(labels[bad]) at index \(bad) is not below the \(classes) classes")
  }

  /// Identifies the data for checkpoints: the image count and a hash of the labels.
  /// Cost: O(count).
  package var fingerprint: String {
    let hash = labels.withUnsafeBytes { SHA256.hex($0) }
    return "\(count) images, labels sha256 \(hash.prefix(16))"
  }

  /// The first `count` images (still in their files, for images kept there).
  /// Cost: O(count · shape.count) in memory, O(count) for files.
  public func prefix(_ count: Int) -> LabeledImages {
    switch storage {
    case .memory(let pixels):
      // Safe: a prefix of valid data is valid.
      try! LabeledImages(
        pixels: Array(pixels.prefix(count * shape.count)), labels: Array(labels.prefix(count)), classes: classes,
        shape: shape)
    case .files(let files, let records):
      LabeledImages(
        storage: .files(files, records: records.map { Array($0.prefix(count)) }), labels: Array(labels.prefix(count)),
        classes: classes, shape: shape)
    }
  }
}

/// A training and a test split.
public struct Dataset: Sendable, CustomStringConvertible {
  public let name: String
  /// Where the files were read from; nil for the MNIST compiled into the binary.
  public let directory: String?
  public let train: LabeledImages
  public let test: LabeledImages
  /// A name for each class label: Fashion-MNIST's garments, CIFAR-10's objects, an image
  /// folder's class folders, else the label's number.
  public let classNames: [String]
  /// What reading an image folder found (its image size, skipped and ignored files);
  /// nil for other data.
  public internal(set) var imageFolder: ImageFolderReport?

  /// Fashion-MNIST's classes, in label order.
  package static let fashionMNISTClassNames = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
  ]
  /// CIFAR-10's classes, in label order.
  package static let cifar10ClassNames = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
  ]

  /// The dataset in a few words, for a run's first line: its name, where it comes from,
  /// and its image counts.
  public var description: String {
    "\(name) (\(directory ?? "bundled")): \(train.count) training and \(test.count) test images"
  }

  /// The four standard IDX file names, without `.gz`.
  package static let fileNames = [
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
  ]

  /// Where Debian's `dataset-fashion-mnist` package installs Fashion-MNIST.
  public static let fashionMNISTDirectory = "/usr/share/datasets/fashion-mnist"

  /// The real MNIST compiled into the binary. Cost: inflating 11 MB (≈ 0.3 s).
  public static func bundledMNIST() throws -> Dataset {
    let files = (0..<cmnist_file_count()).map { cmnist_files()[$0] }
    let decoded = try files.map { file -> IDXFile in
      let name = String(cString: file.name)
      let bytes = Array(UnsafeBufferPointer(start: file.bytes, count: file.count))
      return try IDXFile.decode(bytes, name: "bundled \(name)", dimensionCount: name.contains("images") ? 3 : 1)
    }
    return try Dataset(name: "mnist", directory: nil, files: decoded)
  }

  /// The gzip bytes of one bundled MNIST file, by its standard name (without `.gz`).
  package static func bundledMNISTFile(_ name: String) -> [UInt8]? {
    for index in 0..<cmnist_file_count() where String(cString: cmnist_files()[index].name) == name {
      let file = cmnist_files()[index]
      return Array(UnsafeBufferPointer(start: file.bytes, count: file.count))
    }
    return nil
  }

  /// Reads a dataset from `directory`: CIFAR-10's binary files (`data_batch_1.bin` …
  /// `data_batch_5.bin`, `test_batch.bin`) when they are there, else the four standard
  /// IDX files, each raw or as `NAME.gz`, else an image folder (`train/CLASS/IMAGE.png`,
  /// see `ImageFolder`) read with `imageFolder`. With `testOnly`, only the test split is
  /// read (and must be there); the training split is then empty. Cost: one read of the
  /// files (and, for an image folder, one decode of each image).
  public static func load(
    directory: String, name: String, imageFolder: ImageFolderOptions = ImageFolderOptions(), testOnly: Bool = false
  ) throws -> Dataset {
    var info = stat()
    guard stat(directory, &info) == 0 else {
      throw PTrainError("\(directory): \(errnoText())")
    }
    guard (info.st_mode & S_IFMT) == S_IFDIR else {
      throw PTrainError("\(directory): is \(fileKind(info.st_mode)), not a directory")
    }
    let idxFiles = try fileNames.flatMap { [$0, $0 + ".gz"] }.filter { try isPresent(directory + "/" + $0) }
    if try CIFAR10.isPresent(in: directory) {
      if let idx = idxFiles.first {
        throw PTrainError(
          "\(directory): holds both CIFAR-10's binary files and IDX files (\(idx)); keep one kind of data per directory"
        )
      }
      return try CIFAR10.load(directory: directory, name: name, testOnly: testOnly)
    }
    if idxFiles.isEmpty && ImageFolder.isPresent(in: directory) {
      return try ImageFolder.load(directory: directory, name: name, options: imageFolder, testOnly: testOnly)
    }
    for file in fileNames where idxFiles.contains(file) && idxFiles.contains(file + ".gz") {
      throw PTrainError(
        "\(directory): holds both \(file) and \(file).gz; remove one, so that it is clear which is read")
    }
    let decoded = try fileNames.suffix(testOnly ? 2 : 4).map { file -> IDXFile in
      guard let found = [file, file + ".gz"].first(where: idxFiles.contains) else {
        for candidate in [file, file + ".gz"] { try refuseBrokenLink(directory + "/" + candidate) }
        throw PTrainError(
          "\(directory): neither \(file) nor \(file).gz is there"
            + (idxFiles.isEmpty ? " (nor CIFAR-10's binary files, nor a train/ folder of class folders)" : ""))
      }
      return try IDXFile.read(path: directory + "/" + found, dimensionCount: file.contains("images") ? 3 : 1)
    }
    guard testOnly else { return try Dataset(name: name, directory: directory, files: decoded) }
    let test = try LabeledImages(images: decoded[0], labels: decoded[1], name: "\(name) test set")
    return try Dataset(name: name, directory: directory, train: test.prefix(0), test: test)
  }

  /// Whether a file is at `path` (following links): false when nothing is (or a link
  /// leads nowhere, which `refuseBrokenLink` reports); throws naming the path and the
  /// reason when the system cannot tell, such as permission denied. Cost: one system call.
  package static func isPresent(_ path: String) throws -> Bool {
    if access(path, F_OK) == 0 { return true }
    let code = errno
    guard [ENOENT, ENOTDIR, ELOOP].contains(code) else {
      throw PTrainError("\(path): \(String(cString: strerror(code)))")
    }
    return false
  }

  /// The paths of the data files a dataset in `directory` is read from, of those there:
  /// CIFAR-10's binary files and the IDX files, raw or gzipped. Cost: a few system calls.
  public static func dataFiles(in directory: String) -> [String] {
    (CIFAR10.trainingFiles + [CIFAR10.testFile] + fileNames.flatMap { [$0, $0 + ".gz"] })
      .map { directory + "/" + $0 }.filter { access($0, F_OK) == 0 }
  }

  /// Throws, saying what it is, when `path` is a symbolic link that leads nowhere: a
  /// dangling link or a loop. Cost: two system calls.
  static func refuseBrokenLink(_ path: String) throws {
    var info = stat()
    guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFLNK else { return }
    var target = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let length = readlink(path, &target, target.count - 1)
    let destination =
      length > 0 ? String(decoding: target[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
    guard stat(path, &info) != 0 else { return }
    let what =
      errno == ELOOP ? "a symbolic link loop" : "a dangling symbolic link (to \(destination), which does not exist)"
    throw PTrainError("\(path): is \(what)")
  }

  /// Fashion-MNIST from Debian's package, with install instructions when it is missing.
  public static func fashionMNIST(directory: String = fashionMNISTDirectory) throws -> Dataset {
    guard access(directory, F_OK) == 0 else {
      throw PTrainError(
        "Fashion-MNIST is not installed at \(directory): run `sudo apt-get install dataset-fashion-mnist`, or load a copy from its directory"
      )
    }
    return try load(directory: directory, name: "fashion-mnist")
  }

  private init(name: String, directory: String?, files: [IDXFile]) throws {
    try self.init(
      name: name, directory: directory,
      train: try LabeledImages(images: files[0], labels: files[1], name: "\(name) training set"),
      test: try LabeledImages(images: files[2], labels: files[3], name: "\(name) test set"))
  }

  /// A dataset of two splits of one image shape. `classNames` default to Fashion-MNIST's
  /// for `fashion-mnist`, else the labels' numbers.
  public init(
    name: String, directory: String? = nil, train: LabeledImages, test: LabeledImages, classNames: [String]? = nil
  ) throws {
    guard train.shape == test.shape else {
      throw PTrainError("\(name): training images are \(train.shape) but test images are \(test.shape)")
    }
    self.name = name
    self.directory = directory
    self.train = train
    self.test = test
    let classes = max(train.classes, test.classes)
    self.classNames =
      classNames
      ?? (name == "fashion-mnist" && classes == Self.fashionMNISTClassNames.count
        ? Self.fashionMNISTClassNames : (0..<classes).map(String.init))
  }
}
