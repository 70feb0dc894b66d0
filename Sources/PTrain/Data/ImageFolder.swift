import Dispatch
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// How an image folder is read (see `ImageFolder`).
public struct ImageFolderOptions: Sendable {
  /// The size every image is resized to; nil: the most common size among the training
  /// images.
  public var size: ImageSize?
  /// The channels images are decoded into, 1 or 3; nil: 1 when every training image is
  /// gray, else 3.
  public var channels: Int?
  /// Leave out, and count, the images that cannot be read or decoded, instead of
  /// stopping at the first.
  public var skipBadImages: Bool
  /// The threads that read and decode.
  public var threads: Int
  /// Called now and then from a decoding thread with the images decoded so far and the
  /// total.
  public var progress: (@Sendable (_ decoded: Int, _ total: Int) -> Void)?

  public init(
    size: ImageSize? = nil, channels: Int? = nil, skipBadImages: Bool = false, threads: Int = 1,
    progress: (@Sendable (Int, Int) -> Void)? = nil
  ) {
    self.size = size
    self.channels = channels
    self.skipBadImages = skipBadImages
    self.threads = threads
    self.progress = progress
  }
}

/// What reading an image folder found besides the images.
public struct ImageFolderReport: Sendable {
  /// The size the images were resized to.
  public let size: ImageSize
  /// Whether `size` is the most common training size (none was asked for).
  public let sizeIsMostCommon: Bool
  public let channels: Int
  /// The images left out with `skipBadImages`, each as "PATH: why".
  public let skipped: [String]
  /// The files left out because their extension is not an image's.
  public let ignored: [String]
  /// Whether the folder has a `test` split.
  public let hasTestSet: Bool
  /// How many files were read and decoded, and the wall-clock seconds it took (headers,
  /// decoding and resizing, on `ImageFolderOptions.threads` threads).
  public let decodedFiles: Int, decodeSeconds: Double
}

/// A dataset of image files in one folder per class: `DIR/train/CLASS/…` and, when
/// present, `DIR/test/CLASS/…`, as torchvision's `ImageFolder` and Keras'
/// `image_dataset_from_directory` read them. PNG and JPEG files are decoded once, on
/// `threads` threads, into memory (see `ImageDecoder` for the channel rule and
/// `ImageResizing` for the filter); each image is decoded on its own, so the bytes do not
/// depend on the thread count.
package enum ImageFolder {
  /// How often, in images, decoding reports progress.
  static let progressInterval = 64

  /// Whether `directory` holds a `train` folder.
  package static func isPresent(in directory: String) -> Bool {
    var info = stat()
    return stat(directory + "/train", &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
  }

  /// Reads the image folder `directory` as the dataset `name` (with `testOnly`, only its
  /// test images; the training folder then only names the classes). Throws one line
  /// naming the file for an image that cannot be read (unless `options.skipBadImages`),
  /// and for the folder problems `ImageFolderListing` finds. Cost: two reads of every
  /// file and one decode, spread over `options.threads` threads.
  package static func load(directory: String, name: String, options: ImageFolderOptions, testOnly: Bool = false)
    throws -> Dataset
  {
    let listed = try ImageFolderListing(split: directory + "/train")
    let testPath = directory + "/test"
    var info = stat()
    let hasTest = lstat(testPath, &info) == 0
    if try hasTest && !ImageFolderListing.isDirectory(testPath) {
      throw PTrainError("\(testPath): is \(fileKind(info.st_mode)), not a folder of class folders")
    }
    let test = try hasTest ? ImageFolderListing(split: testPath, classNames: listed.classNames) : nil
    guard !testOnly || test != nil else { throw PTrainError("\(testPath): no such folder of test images") }
    let train = testOnly ? ImageFolderListing(classNames: listed.classNames) : listed
    let files = train.files + (test?.files ?? [])
    var bad = [String?](repeating: nil, count: files.count)
    let clock = ContinuousClock()
    let start = clock.now
    let headers = try readHeaders(files, options: options, bad: &bad)
    // The images that choose the size and channels: the training ones, or the test ones alone.
    let good = (testOnly ? files.indices : train.files.indices).filter { bad[$0] == nil }
    guard !good.isEmpty else {
      throw PTrainError("\(testOnly ? testPath : directory + "/train"): no image could be read")
    }
    let size = options.size ?? mostCommonSize(good.map { headers[$0]! })
    let channels = options.channels ?? (good.allSatisfy { headers[$0]!.gray } ? 1 : 3)
    let shape = ImageShape(height: size.height, width: size.width, channels: channels)
    var pixels = [UInt8](repeating: 0, count: files.count * shape.count)
    try decode(files, headers: headers, shape: shape, options: options, into: &pixels, bad: &bad)
    let decodeSeconds = (clock.now - start).seconds
    func images(_ range: Range<Int>, labels: [UInt8]) throws -> LabeledImages {
      let kept = range.filter { bad[$0] == nil }
      var bytes = [UInt8]()
      bytes.reserveCapacity(kept.count * shape.count)
      for index in kept { bytes += pixels[(index * shape.count)..<((index + 1) * shape.count)] }
      return try LabeledImages(
        pixels: bytes, labels: kept.map { labels[$0 - range.lowerBound] }, classes: train.classNames.count,
        shape: shape)
    }
    let trainImages = try images(0..<train.files.count, labels: train.labels)
    guard testOnly || trainImages.count > 0 else { throw PTrainError("\(directory)/train: no image could be read") }
    var dataset = try Dataset(
      name: name, directory: directory, train: trainImages,
      test: try images(train.files.count..<files.count, labels: test?.labels ?? []),
      classNames: train.classNames)
    dataset.imageFolder = ImageFolderReport(
      size: size, sizeIsMostCommon: options.size == nil, channels: channels, skipped: bad.compactMap { $0 },
      ignored: train.ignored + (test?.ignored ?? []), hasTestSet: hasTest, decodedFiles: files.count,
      decodeSeconds: decodeSeconds)
    return dataset
  }

  /// The size most images have; a tie goes to the larger, then the taller. Cost: O(n).
  static func mostCommonSize(_ headers: [ImageDecoder.Header]) -> ImageSize {
    var counts: [ImageSize: Int] = [:]
    for header in headers { counts[ImageSize(height: header.height, width: header.width), default: 0] += 1 }
    return counts.max { a, b in
      (a.value, a.key.height * a.key.width, a.key.height) < (b.value, b.key.height * b.key.width, b.key.height)
    }!.key
  }

  /// Each file's header, nil for a file that cannot be read or is not an image (its
  /// reason in `bad`, or thrown without `skipBadImages`).
  private static func readHeaders(_ files: [String], options: ImageFolderOptions, bad: inout [String?]) throws
    -> [ImageDecoder.Header?]
  {
    let headers = UnsafeMutableBufferPointer<ImageDecoder.Header?>.allocate(capacity: files.count)
    headers.initialize(repeating: nil)
    defer { headers.deallocate() }
    nonisolated(unsafe) let results = headers
    try forEach(files.count, options: options, reporting: false, bad: &bad) { index in
      results[index] = try ImageDecoder.header(
        of: try readFile(files[index], limit: ImageDecoder.maximumFileBytes), path: files[index])
    }
    return Array(headers)
  }

  /// Decodes every file with a header into its place in `pixels`, `shape.count` bytes
  /// each.
  private static func decode(
    _ files: [String], headers: [ImageDecoder.Header?], shape: ImageShape, options: ImageFolderOptions,
    into pixels: inout [UInt8], bad: inout [String?]
  ) throws {
    let skip = bad
    try pixels.withUnsafeMutableBufferPointer { pixels in
      nonisolated(unsafe) let base = pixels.baseAddress!
      try forEach(files.count, options: options, reporting: true, bad: &bad) { index in
        guard skip[index] == nil, let header = headers[index] else { return }
        let bytes = try readFile(files[index], limit: ImageDecoder.maximumFileBytes)
        try ImageDecoder.decode(
          bytes, header: header, path: files[index], into: base + index * shape.count, shape: shape)
      }
    }
  }

  /// Runs `body` for every index below `count` on `options.threads` threads, each index
  /// once. An index whose body throws gets the error in `bad`; without `skipBadImages`
  /// the lowest such index's error is then thrown, so the same file is named whatever the
  /// thread count.
  private static func forEach(
    _ count: Int, options: ImageFolderOptions, reporting: Bool, bad: inout [String?],
    _ body: @Sendable (Int) throws -> Void
  ) throws {
    let next = Atomic<Int>(0)
    let done = Atomic<Int>(0)
    let failures = Mutex<[Int: String]>([:])
    let progress = reporting ? options.progress : nil
    DispatchQueue.concurrentPerform(iterations: max(1, min(options.threads, count))) { _ in
      while true {
        let index = next.wrappingAdd(1, ordering: .relaxed).oldValue
        guard index < count else { return }
        do { try body(index) } catch { failures.withLock { $0[index] = "\(error)" } }
        let finished = done.wrappingAdd(1, ordering: .relaxed).newValue
        if let progress, finished % progressInterval == 0 || finished == count { progress(finished, count) }
      }
    }
    let found = failures.withLock { $0 }
    for (index, reason) in found { bad[index] = reason }
    if !options.skipBadImages, let first = found.keys.min() {
      throw PTrainError("\(found[first]!) (--skip-bad-images leaves such files out)")
    }
  }
}
