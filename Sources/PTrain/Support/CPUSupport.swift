#if canImport(Glibc)
  import Glibc
#endif

/// The vector instructions the release build is compiled for.
public enum CPUSupport {
  /// Throws a one-line error when this CPU lacks AVX2 or FMA, which the x86-64 release
  /// build (`-march=x86-64-v3`) uses everywhere. Linux x86-64 only; elsewhere a no-op.
  /// Cost: one read of /proc/cpuinfo.
  public static func requireVectorUnits() throws {
    #if arch(x86_64) && os(Linux)
      guard let file = fopen("/proc/cpuinfo", "r") else { return }
      defer { fclose(file) }
      var line = [CChar](repeating: 0, count: 1 << 16)
      while fgets(&line, Int32(line.count), file) != nil {
        let text = String(cString: line)
        guard text.hasPrefix("flags") else { continue }
        let flags = Set(text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }))
        let missing = ["avx2", "fma"].filter { !flags.contains(Substring($0)) }
        if !missing.isEmpty {
          throw PTrainError(
            "this CPU lacks \(missing.joined(separator: " and ")), which this build of ptrain needs (x86-64-v3)")
        }
        return
      }
    #endif
  }
}
