import ArgumentParser
import Foundation
import PTrain

/// A file ptrain reads or writes, by its role in the command line.
struct NamedPath {
  /// The flag or input that names it: `--save`, `--from`, `the data's train-images-idx3-ubyte`.
  let role: String
  let path: String
}

/// Whether `a` and `b` are the same file: the same device and inode after symbolic links
/// when both exist, else the same absolute path with the directory's links resolved.
/// Cost: a few system calls.
func sameFile(_ a: String, _ b: String) -> Bool {
  var first = stat()
  var second = stat()
  if stat(a, &first) == 0, stat(b, &second) == 0 {
    return first.st_dev == second.st_dev && first.st_ino == second.st_ino
  }
  return canonicalPath(a) == canonicalPath(b)
}

/// `path` made absolute, its directory's symbolic links resolved and its last component
/// kept: two spellings of a file that does not exist yet give the same string.
func canonicalPath(_ path: String) -> String {
  let url = URL(fileURLWithPath: path)
  return absolutePath(url.deletingLastPathComponent().path) + "/" + url.lastPathComponent
}

/// Refuses, as a usage error before any work, an output that is one of the inputs or
/// another output (compared as files, not as spellings): ptrain never writes over what it
/// reads, nor writes two results to one file.
func refuseOverwriting(inputs: [NamedPath], outputs: [NamedPath]) throws {
  for (index, output) in outputs.enumerated() {
    if let input = inputs.first(where: { sameFile($0.path, output.path) }) {
      throw ValidationError(
        "\(output.role) \(output.path) is \(input.role) (\(input.path)), which ptrain reads; it never writes over its inputs: name another file"
      )
    }
    if let other = outputs[..<index].first(where: { sameFile($0.path, output.path) }) {
      throw ValidationError("\(other.role) and \(output.role) name the same file, \(output.path); give each its own")
    }
  }
}

/// The data files of `dataset` as inputs, for `refuseOverwriting`.
func dataInputs(_ dataset: Dataset) -> [NamedPath] {
  guard let directory = dataset.directory else { return [] }
  return Dataset.dataFiles(in: directory).map {
    NamedPath(role: "the data's \(URL(fileURLWithPath: $0).lastPathComponent)", path: $0)
  }
}

/// An exclusive lock on a checkpoint's destination for the rest of the process, so that
/// two runs saving to one file at once cannot both write it: the second is refused. The
/// lock is `flock` on `.NAME.lock` beside the file (beside a symlink's target), which
/// holds the owner's process id and is removed at exit.
enum DestinationLock {
  /// The lock files this process holds, removed at exit.
  nonisolated(unsafe) private static var held: [String] = []

  /// Takes the lock of `path`, or throws naming the process that holds it.
  static func acquire(_ path: String) throws {
    let lockPath = lockFile(for: path)
    while true {
      let descriptor = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
      guard descriptor >= 0 else {
        throw PTrainError("\(path): cannot create its lock file \(lockPath): \(String(cString: strerror(errno)))")
      }
      guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
        var owner = [UInt8](repeating: 0, count: 32)
        let count = read(descriptor, &owner, owner.count)
        close(descriptor)
        let pid = String(decoding: owner.prefix(max(count, 0)), as: UTF8.self).filter(\.isNumber)
        throw PTrainError(
          "\(path) is being saved by another ptrain run\(pid.isEmpty ? "" : " (process \(pid))"); wait for it to finish, or save to another file"
        )
      }
      // The file may have been removed by its last owner between our open and flock.
      var opened = stat()
      var named = stat()
      if fstat(descriptor, &opened) == 0, stat(lockPath, &named) == 0, opened.st_ino == named.st_ino,
        opened.st_dev == named.st_dev
      {
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(descriptor, 0)
        _ = pid.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
        if held.isEmpty { atexit { DestinationLock.releaseAll() } }
        held.append(lockPath)
        return  // the descriptor stays open, holding the lock, until the process ends
      }
      close(descriptor)
    }
  }

  /// `.NAME.lock` beside the file `path` names (after symbolic links).
  static func lockFile(for path: String) -> String {
    let resolved = canonicalPath(URL(fileURLWithPath: path).resolvingSymlinksInPath().path)
    let url = URL(fileURLWithPath: resolved)
    var name = ""  // cut, at a character, so that `.NAME.lock` fits a file name's 255 bytes
    for character in url.lastPathComponent where name.utf8.count + character.utf8.count <= 255 - 6 {
      name.append(character)
    }
    return url.deletingLastPathComponent().path + "/." + name + ".lock"
  }

  /// Removes the lock files this process holds (their locks end with the process).
  static func releaseAll() {
    for path in held { unlink(path) }
    held = []
  }
}
