#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The message of the current `errno`.
func errnoText() -> String { String(cString: strerror(errno)) }

/// What kind of file `mode` (a `stat` mode) describes, in words: "a FIFO", "a socket", ….
func fileKind(_ mode: mode_t) -> String {
  switch mode & S_IFMT {
  case S_IFREG: "a regular file"
  case S_IFDIR: "a directory"
  case S_IFCHR: "a character device"
  case S_IFBLK: "a block device"
  case S_IFIFO: "a FIFO"
  case S_IFSOCK: "a socket"
  case S_IFLNK: "a symbolic link"
  default: "not a regular file"
  }
}

/// Reads the whole regular file at `path`, refusing files over `limit` bytes before
/// allocating. The file is opened without blocking and its type checked before any
/// read, so a FIFO or a device is refused at once instead of hanging.
/// Cost: one read of the file.
package func readFile(_ path: String, limit: Int) throws -> [UInt8] {
  let descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
  guard descriptor >= 0 else { throw PTrainError("\(path): \(errnoText())") }
  defer { close(descriptor) }
  var info = stat()
  guard fstat(descriptor, &info) == 0 else { throw PTrainError("\(path): \(errnoText())") }
  guard (info.st_mode & S_IFMT) == S_IFREG else {
    throw PTrainError("\(path): is \(fileKind(info.st_mode)), not a regular file")
  }
  let size = Int(info.st_size)
  guard size <= limit else { throw PTrainError("\(path): \(size) bytes is over the \(limit)-byte limit") }
  var bytes = [UInt8](repeating: 0, count: size)
  var done = 0
  while done < size {
    let count = bytes.withUnsafeMutableBytes { read(descriptor, $0.baseAddress! + done, size - done) }
    if count < 0 && errno == EINTR { continue }
    guard count > 0 else {
      throw PTrainError("\(path): read \(done) of \(size) bytes: \(count < 0 ? errnoText() : "file shrank")")
    }
    done += count
  }
  return bytes
}

/// Where an atomic write of a path lands, found by `AtomicWriteTarget.init(path:)`.
///
/// A symbolic link is written through: the new file replaces the link's final target
/// (its temporary file is made beside that target), and the link itself stays. Anything
/// that exists and is not a regular file (a directory, a device, a FIFO, a socket, a
/// dangling link or a link loop) is refused, so a write never replaces it.
struct AtomicWriteTarget {
  /// The path the new file is renamed to: `path`, or the real file a symlink points at.
  let path: String
  /// The directory holding `path`, and `path`'s last component.
  let directory: String
  let fileName: String
  /// The permission bits of the file being replaced, kept by the new one.
  let existingMode: mode_t?

  /// Resolves `requested`; throws a one-line error naming it when it cannot be written
  /// as a file. Cost: a few system calls.
  init(path requested: String) throws {
    guard !requested.isEmpty else { throw PTrainError("\"\": the path is empty; give a file name") }
    guard !requested.hasSuffix("/") else {
      throw PTrainError("\(requested): ends in /, so it names a directory; give a file name")
    }
    var resolved = requested
    var info = stat()
    if lstat(requested, &info) != 0 {
      guard errno == ENOENT else { throw Self.failure(requested, errno: errno) }
      existingMode = nil
    } else {
      if (info.st_mode & S_IFMT) == S_IFLNK {
        guard let real = realpath(requested, nil) else {
          let reason = errno == ELOOP ? "a symbolic link loop" : "a symbolic link to a missing file"
          throw PTrainError("\(requested): is \(reason); give a regular file or a link to one")
        }
        resolved = String(cString: real)
        free(real)
        guard stat(resolved, &info) == 0 else { throw Self.failure(requested, errno: errno) }
      }
      switch info.st_mode & S_IFMT {
      case S_IFREG: existingMode = info.st_mode & 0o7777
      case S_IFDIR:
        throw PTrainError("\(requested): is a directory; give a file path such as \(requested)/model.safetensors")
      default:
        throw PTrainError(
          "\(requested): is \(fileKind(info.st_mode)), not a regular file; ptrain only replaces regular files")
      }
    }
    let slash = resolved.lastIndex(of: "/")
    directory = slash.map { $0 == resolved.startIndex ? "/" : String(resolved[..<$0]) } ?? "."
    fileName = slash.map { String(resolved[resolved.index(after: $0)...]) } ?? resolved
    path = resolved
  }

  /// The error for a failed `lstat`/`stat` of `path`, naming a parent that is not a
  /// directory when that is the reason.
  private static func failure(_ path: String, errno code: Int32) -> PTrainError {
    if code == ENOTDIR {
      return PTrainError("\(path): a parent of it is not a directory")
    }
    return PTrainError("\(path): \(String(cString: strerror(code)))")
  }

  /// The temporary file beside `path`: `.NAME.tmp-PID`, with NAME shortened (at a
  /// character boundary) so that the whole name fits the 255 bytes a file name may have.
  var temporaryPath: String {
    let suffix = ".tmp-\(getpid())"
    let budget = 255 - 1 - suffix.utf8.count
    var stem = ""
    var bytes = 0
    for character in fileName {
      let size = character.utf8.count
      if bytes + size > budget { break }
      stem.append(character)
      bytes += size
    }
    return (directory == "/" ? "/" : directory + "/") + "." + stem + suffix
  }

  /// Opens (creating or truncating) the temporary file for writing; -1 and `errno` on
  /// failure. It never follows a symbolic link planted under its name.
  func openTemporary() -> Int32 {
    open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, existingMode ?? 0o644)
  }
}

/// Checks, before any work is spent, that `writeFileAtomically(_:to: path)` can create
/// its file: the path names a regular file or nothing (or a symlink to a regular file),
/// its directory exists, and the temporary file can be created there (it is created and
/// removed). Throws a one-line error naming `path` otherwise. Cost: a few system calls.
package func checkWritable(_ path: String) throws {
  let target = try AtomicWriteTarget(path: path)
  let descriptor = target.openTemporary()
  guard descriptor >= 0 else {
    let code = errno
    var info = stat()
    let missing = code == ENOTDIR || (code == ENOENT && stat(target.directory, &info) != 0)
    let reason = missing ? "no such directory" : String(cString: strerror(code))
    throw PTrainError("\(path): cannot create a file in \(target.directory): \(reason)")
  }
  close(descriptor)
  unlink(target.temporaryPath)
}

/// Replaces the file at `path` with `bytes` atomically: writes a temporary file in the
/// same directory, fsyncs it, renames it over `path` and fsyncs the directory. A crash
/// at any moment leaves either the old file or the new one under `path`, never a mix.
/// The new file keeps the old one's permission bits; a symlink is written through (see
/// `AtomicWriteTarget`); anything else that is not a regular file is refused untouched.
/// Cost: one write of `bytes` plus two fsyncs.
package func writeFileAtomically(_ bytes: [UInt8], to path: String) throws {
  let target = try AtomicWriteTarget(path: path)
  let temporary = target.temporaryPath
  let descriptor = target.openTemporary()
  guard descriptor >= 0 else { throw PTrainError("\(path): cannot create \(temporary): \(errnoText())") }
  var failure: String?
  // The creation mode passes through the umask; the old file's bits are set exactly.
  if let mode = target.existingMode, fchmod(descriptor, mode) != 0 { failure = "chmod failed: \(errnoText())" }
  var done = 0
  while done < bytes.count && failure == nil {
    let count = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + done, bytes.count - done) }
    if count < 0 && errno == EINTR { continue }
    if count <= 0 { failure = "write failed: \(errnoText())" } else { done += count }
  }
  if failure == nil && fsync(descriptor) != 0 { failure = "fsync failed: \(errnoText())" }
  if close(descriptor) != 0 && failure == nil { failure = "close failed: \(errnoText())" }
  if failure == nil && rename(temporary, target.path) != 0 { failure = "rename failed: \(errnoText())" }
  if let failure {
    unlink(temporary)
    throw PTrainError("\(path): \(failure); the previous file, if any, is untouched")
  }
  let directoryDescriptor = open(target.directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
  if directoryDescriptor >= 0 {
    _ = fsync(directoryDescriptor)
    close(directoryDescriptor)
  }
}
