#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The image files of one split of an image folder (`DIR/train` or `DIR/test`): one
/// folder per class, its images anywhere below it (links followed), as torchvision's
/// `ImageFolder` and Keras' `image_dataset_from_directory` read them. Names are sorted
/// by Unicode code point, as Python sorts them, so the class numbers are theirs.
package struct ImageFolderListing: Sendable {
  /// The class folders' names, sorted.
  package let classNames: [String]
  /// Every image file, class after class, each class's files sorted by path.
  package let files: [String]
  /// The class number of each file.
  package let labels: [UInt8]
  /// Files that are not images by their extension (.png, .jpg, .jpeg), left out.
  package let ignored: [String]

  /// The most classes a folder may have: labels are bytes.
  package static let maximumClasses = 256

  /// Lists `split`. With `classNames` (the training split's), every class folder must be
  /// one of them, and the labels are their numbers. Throws one line naming the path for
  /// a missing or unreadable folder, a symbolic link loop or a dangling link, a class
  /// folder without images, a class the training split lacks, or too many classes.
  /// Cost: one `stat` per entry.
  package init(split: String, classNames known: [String]? = nil) throws {
    let entries = try Self.entries(of: split)
    var classNames: [String] = []
    var ignored: [String] = []
    for name in entries {
      let path = split + "/" + name
      if try Self.isDirectory(path) { classNames.append(name) } else { ignored.append(path) }
    }
    guard !classNames.isEmpty else {
      throw PTrainError("\(split): holds no class folders (expected \(split)/CLASS/IMAGE.png, one folder per class)")
    }
    guard classNames.count <= Self.maximumClasses else {
      throw PTrainError(
        "\(split): holds \(classNames.count) class folders; ptrain trains at most \(Self.maximumClasses) classes")
    }
    if let known {
      if let stranger = classNames.first(where: { !known.contains($0) }) {
        throw PTrainError(
          "\(split)/\(stranger): a class the training folder does not have (its classes: \(known.joined(separator: ", ")))"
        )
      }
    }
    let numbers = known ?? classNames
    var files: [String] = []
    var labels: [UInt8] = []
    for name in classNames {
      var found: [String] = []
      try Self.collect(split + "/" + name, images: &found, ignored: &ignored, ancestors: [])
      guard !found.isEmpty else {
        throw PTrainError("\(split)/\(name): an empty class folder (no .png, .jpg or .jpeg file in it)")
      }
      files += found
      labels += Array(repeating: UInt8(numbers.firstIndex(of: name)!), count: found.count)
    }
    self.classNames = numbers
    self.files = files
    self.labels = labels
    self.ignored = ignored
  }

  /// A listing of no files, of the classes `classNames`.
  package init(classNames: [String]) {
    self.classNames = classNames
    files = []
    labels = []
    ignored = []
  }

  /// `directory`'s entries but `.` and `..`, sorted by code point. Cost: one read of it.
  static func entries(of directory: String) throws -> [String] {
    guard let stream = opendir(directory) else { throw PTrainError("\(directory): \(errnoText())") }
    defer { closedir(stream) }
    var names: [String] = []
    while let entry = readdir(stream) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) {
        String(cString: $0.bindMemory(to: CChar.self).baseAddress!)
      }
      if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
  }

  /// Whether `path` (followed through links) is a directory; throws for a dangling link,
  /// a link loop, or a path the system cannot look at. Cost: one or two system calls.
  static func isDirectory(_ path: String) throws -> Bool {
    var info = stat()
    guard stat(path, &info) == 0 else {
      let code = errno
      try Dataset.refuseBrokenLink(path)
      throw PTrainError("\(path): \(String(cString: strerror(code)))")
    }
    return (info.st_mode & S_IFMT) == S_IFDIR
  }

  /// Adds the image files below `directory` to `images` and the other files to
  /// `ignored`, in torchvision's order: folders by their whole path (code point order),
  /// and in each folder its files by name. A folder that is its own ancestor (a link back
  /// up the tree; `ancestors` are the device and inode numbers of the folders above) is
  /// refused as a loop. Cost: one `stat` per entry.
  private static func collect(
    _ directory: String, images: inout [String], ignored: inout [String], ancestors: Set<[UInt64]>
  ) throws {
    var folders: [(path: String, images: [String])] = []
    try walk(directory, into: &folders, ignored: &ignored, ancestors: ancestors)
    folders.sort { $0.path.unicodeScalars.lexicographicallyPrecedes($1.path.unicodeScalars) }
    for folder in folders { images += folder.images }
  }

  /// Adds `directory` and the folders below it to `folders`, each with its image files
  /// sorted by name.
  private static func walk(
    _ directory: String, into folders: inout [(path: String, images: [String])], ignored: inout [String],
    ancestors: Set<[UInt64]>
  ) throws {
    var info = stat()
    guard stat(directory, &info) == 0 else { throw PTrainError("\(directory): \(errnoText())") }
    var chain = ancestors
    guard chain.insert([UInt64(info.st_dev), UInt64(info.st_ino)]).inserted else {
      throw PTrainError("\(directory): is a symbolic link loop (it leads back to a folder above it)")
    }
    var images: [String] = []
    var below: [String] = []
    for name in try entries(of: directory) {
      let path = directory + "/" + name
      if try isDirectory(path) {
        below.append(path)
      } else if ImageDecoder.hasImageExtension(name) {
        images.append(path)
      } else {
        ignored.append(path)
      }
    }
    folders.append((directory, images))
    for path in below { try walk(path, into: &folders, ignored: &ignored, ancestors: chain) }
  }
}
