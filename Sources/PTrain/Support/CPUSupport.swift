#if canImport(Glibc)
  import Glibc
#endif

/// The vector instructions the release build is compiled for.
package enum CPUSupport {
  #if PTRAIN_AVX512
    static let requiredFlags = ["avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl"]
    /// The `-march` level this build was compiled for.
    package static let level = "x86-64-v4"
  #else
    static let requiredFlags = ["avx2", "fma"]
    /// The `-march` level this build was compiled for.
    package static let level = "x86-64-v3"
  #endif

  /// This CPU as `/proc/cpuinfo` names it, with its family and model numbers (which tell
  /// AMD's Zen 4, family 25, from Zen 5, family 26), for labelling measurements; "unknown
  /// CPU" elsewhere. Cost: one read of /proc/cpuinfo.
  package static var cpuName: String {
    var fields: [String: String] = [:]
    #if os(Linux)
      if let file = fopen("/proc/cpuinfo", "r") {
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 1 << 16)
        while fields.count < 3, fgets(&line, Int32(line.count), file) != nil {
          let parts = line.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }.split(
            separator: ":", maxSplits: 1)
          guard parts.count == 2 else { continue }
          let key = trimmed(parts[0])
          if ["model name", "cpu family", "model"].contains(key), fields[key] == nil {
            fields[key] = trimmed(parts[1])
          }
        }
      }
    #endif
    guard let name = fields["model name"] else { return "unknown CPU" }
    guard let family = fields["cpu family"], let model = fields["model"] else { return name }
    return "\(name), family \(family) model \(model)"
  }

  /// Throws a one-line error when this CPU lacks the vector instructions the release build
  /// was compiled for (`PTRAIN_MARCH`, AVX2 and FMA by default). Linux x86-64 only; elsewhere a no-op.
  /// Cost: one read of /proc/cpuinfo.
  package static func requireVectorUnits() throws {
    #if arch(x86_64) && os(Linux)
      guard let file = fopen("/proc/cpuinfo", "r") else { return }
      defer { fclose(file) }
      var line = [CChar](repeating: 0, count: 1 << 16)
      while fgets(&line, Int32(line.count), file) != nil {
        let text = line.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
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

  /// `text` without leading and trailing whitespace.
  private static func trimmed(_ text: Substring) -> String {
    String(text.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
  }
}
