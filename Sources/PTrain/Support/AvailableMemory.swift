#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The bytes of memory this process can still allocate without swapping or being killed:
/// the kernel's `MemAvailable`, or less where a cgroup (a container, a Slurm job) limits
/// the process to less. Nil where neither can be read. Cost: reading two or three small
/// files.
package func availableMemory() -> Int? {
  var available: Int?
  if let text = readSmallFile("/proc/meminfo"),
    let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
    let kilobytes = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) })
  {
    available = kilobytes * 1024
  }
  if let limit = readSmallFile("/sys/fs/cgroup/memory.max").flatMap({ Int($0.filter { !$0.isWhitespace }) }),
    let used = readSmallFile("/sys/fs/cgroup/memory.current").flatMap({ Int($0.filter { !$0.isWhitespace }) })
  {
    available = min(available ?? .max, max(limit - used, 0))
  }
  return available
}

/// The text of a small file whose size `stat` does not tell (a /proc or /sys file), or nil.
private func readSmallFile(_ path: String) -> String? {
  guard let file = fopen(path, "r") else { return nil }
  defer { fclose(file) }
  var bytes: [UInt8] = []
  var buffer = [UInt8](repeating: 0, count: 4096)
  while true {
    let count = fread(&buffer, 1, buffer.count, file)
    if count <= 0 { break }
    bytes += buffer[0..<count]
    if bytes.count > 1 << 20 { return nil }
  }
  return String(decoding: bytes, as: UTF8.self)
}
