#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The message of the current `errno`.
func errnoText() -> String { String(cString: strerror(errno)) }

/// Reads the whole regular file at `path`, refusing files over `limit` bytes before
/// allocating. Cost: one read of the file.
public func readFile(_ path: String, limit: Int) throws -> [UInt8] {
  let descriptor = open(path, O_RDONLY)
  guard descriptor >= 0 else { throw PTrainError("\(path): \(errnoText())") }
  defer { close(descriptor) }
  var info = stat()
  guard fstat(descriptor, &info) == 0 else { throw PTrainError("\(path): \(errnoText())") }
  guard (info.st_mode & S_IFMT) == S_IFREG else { throw PTrainError("\(path): not a regular file") }
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

/// Replaces the file at `path` with `bytes` atomically: writes a temporary file in the
/// same directory, fsyncs it, renames it over `path` and fsyncs the directory. A crash
/// at any moment leaves either the old file or the new one under `path`, never a mix.
/// Cost: one write of `bytes` plus two fsyncs.
public func writeFileAtomically(_ bytes: [UInt8], to path: String) throws {
  let slash = path.lastIndex(of: "/")
  let directory = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
  let fileName = slash.map { String(path[path.index(after: $0)...]) } ?? path
  guard !fileName.isEmpty else { throw PTrainError("\(path): names a directory, not a file") }
  let temporary = (slash.map { String(path[...$0]) } ?? "") + ".\(fileName).tmp-\(getpid())"
  let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
  guard descriptor >= 0 else { throw PTrainError("\(path): cannot create \(temporary): \(errnoText())") }
  var failure: String?
  var done = 0
  while done < bytes.count && failure == nil {
    let count = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + done, bytes.count - done) }
    if count < 0 && errno == EINTR { continue }
    if count <= 0 { failure = "write failed: \(errnoText())" } else { done += count }
  }
  if failure == nil && fsync(descriptor) != 0 { failure = "fsync failed: \(errnoText())" }
  if close(descriptor) != 0 && failure == nil { failure = "close failed: \(errnoText())" }
  if failure == nil && rename(temporary, path) != 0 { failure = "rename failed: \(errnoText())" }
  if let failure {
    unlink(temporary)
    throw PTrainError("\(path): \(failure); the previous file, if any, is untouched")
  }
  let directoryDescriptor = open(directory, O_RDONLY | O_DIRECTORY)
  if directoryDescriptor >= 0 {
    _ = fsync(directoryDescriptor)
    close(directoryDescriptor)
  }
}
