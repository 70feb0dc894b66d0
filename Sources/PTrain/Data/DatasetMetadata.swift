#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// What a checkpoint records about the data it was trained on.
extension Dataset {
  /// `__metadata__` entries that let a resume, `evaluate` and `predict` find the data and
  /// name the classes again, from any directory: `dataset` (the name), `train_images`,
  /// `data_directory` (absolute, symbolic links resolved), `class_names` (a JSON array of
  /// `classes` names: the data's, then numbers for a head with more classes) and, for an
  /// image folder, `image_size`. Cost: O(classes) and one `realpath`.
  public func checkpointMetadata(trainImages: Int, classes: Int) -> [String: String] {
    var result = ["dataset": name, "train_images": String(trainImages)]
    if let directory { result["data_directory"] = Self.absolutePath(directory) }
    let names = Array(classNames.prefix(classes)) + (min(classNames.count, classes)..<classes).map(String.init)
    result["class_names"] = "[" + names.map(Self.jsonString).joined(separator: ",") + "]"
    if let imageFolder { result["image_size"] = imageFolder.size.description }
    return result
  }

  /// `text` as a JSON string literal with every control character (C0, DEL, C1) escaped,
  /// so that the metadata never holds one raw.
  static func jsonString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case _ where scalar.properties.generalCategory == .control:
        let hex = String(scalar.value, radix: 16)
        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
      default: out.unicodeScalars.append(scalar)
      }
    }
    return out + "\""
  }

  /// `path` with symbolic links, `.` and `..` resolved when it exists; else made absolute
  /// against the working directory as it is.
  static func absolutePath(_ path: String) -> String {
    if let resolved = realpath(path, nil) {
      defer { free(resolved) }
      return String(cString: resolved)
    }
    guard !path.hasPrefix("/"), let directory = getcwd(nil, 0) else { return path }
    defer { free(directory) }
    return String(cString: directory) + "/" + path
  }
}
