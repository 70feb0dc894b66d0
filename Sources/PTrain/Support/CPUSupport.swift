#if canImport(Glibc)
  import Glibc
#endif

/// The vector instructions the release build is compiled for.
public enum CPUSupport {
  #if PTRAIN_AVX512
    static let requiredFlags = ["avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl"]
    static let level = "x86-64-v4"
  #else
    static let requiredFlags = ["avx2", "fma"]
    static let level = "x86-64-v3"
  #endif

  /// Throws a one-line error when this CPU lacks the vector instructions the release build
  /// was compiled for (`PTRAIN_MARCH`, AVX2 and FMA by default). Linux x86-64 only; elsewhere a no-op.
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
        let missing = requiredFlags.filter { !flags.contains(Substring($0)) }
        if !missing.isEmpty {
          throw PTrainError(
            "this CPU lacks \(missing.joined(separator: " and ")), which this build of ptrain needs (\(level))")
        }
        return
      }
    #endif
  }
}
