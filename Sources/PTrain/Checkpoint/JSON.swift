/// A JSON value, as parsed from a safetensors header.
///
/// Numbers keep their source text so that integers of any size are checked exactly
/// when read rather than rounded through a Double.
package enum JSONValue: Equatable, Sendable {
  case object([(key: String, value: JSONValue)])
  case array([JSONValue])
  case string(String)
  case number(String)
  case bool(Bool)
  case null

  package static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
    switch (lhs, rhs) {
    case (.object(let a), .object(let b)):
      a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    case (.array(let a), .array(let b)): a == b
    case (.string(let a), .string(let b)), (.number(let a), .number(let b)): a == b
    case (.bool(let a), .bool(let b)): a == b
    case (.null, .null): true
    default: false
    }
  }

  /// The value as a non-negative integer that fits an `Int`, if it is one.
  package var nonNegativeInt: Int? {
    guard case .number(let text) = self, !text.isEmpty, text.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else {
      return nil
    }
    return Int(text)
  }

  /// Encodes `text` as a JSON string literal.
  package static func quoted(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      case _ where scalar.value < 0x20:
        let hex = String(scalar.value, radix: 16)
        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
      default: out.unicodeScalars.append(scalar)
      }
    }
    return out + "\""
  }
}

/// A strict RFC 8259 parser over UTF-8 bytes with a nesting limit, so that hostile
/// input costs at most O(bytes) time and memory and never recurses deeply. An object
/// that repeats a key is refused, since readers disagree on which copy counts.
package struct JSONParser {
  /// The deepest nesting of arrays and objects accepted.
  static let maximumDepth = 32

  private let bytes: [UInt8]
  private var position = 0

  /// Parses `bytes` as exactly one JSON value; throws an error naming the byte offset.
  package static func parse(_ bytes: [UInt8]) throws -> JSONValue {
    var parser = JSONParser(bytes: bytes)
    let value = try parser.value(depth: 0)
    parser.skipWhitespace()
    guard parser.position == bytes.count else { throw parser.failure("unexpected bytes after the JSON value") }
    return value
  }

  private init(bytes: [UInt8]) { self.bytes = bytes }

  private func failure(_ what: String) -> PTrainError {
    PTrainError("bad JSON at byte \(position): \(what)")
  }

  private mutating func skipWhitespace() {
    while position < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[position]) { position += 1 }
  }

  private mutating func expect(_ literal: String) throws {
    for byte in literal.utf8 {
      guard position < bytes.count, bytes[position] == byte else { throw failure("expected \(literal)") }
      position += 1
    }
  }

  private mutating func value(depth: Int) throws -> JSONValue {
    skipWhitespace()
    guard position < bytes.count else { throw failure("unexpected end") }
    switch bytes[position] {
    case UInt8(ascii: "{"): return try object(depth: depth + 1)
    case UInt8(ascii: "["): return try array(depth: depth + 1)
    case UInt8(ascii: "\""): return .string(try string())
    case UInt8(ascii: "t"):
      try expect("true")
      return .bool(true)
    case UInt8(ascii: "f"):
      try expect("false")
      return .bool(false)
    case UInt8(ascii: "n"):
      try expect("null")
      return .null
    default: return .number(try number())
    }
  }

  private mutating func object(depth: Int) throws -> JSONValue {
    var members: [(key: String, value: JSONValue)] = []
    var keys: Set<String> = []
    try sequence(closing: "}", depth: depth) { parser in
      guard parser.position < parser.bytes.count, parser.bytes[parser.position] == UInt8(ascii: "\"") else {
        throw parser.failure("expected a key")
      }
      let keyStart = parser.position
      let key = try parser.string()
      guard keys.insert(key).inserted else {
        // Parsers disagree on repeated keys (first wins here, last in Python), so none is read.
        parser.position = keyStart
        throw parser.failure("duplicate key \(JSONValue.quoted(key))")
      }
      parser.skipWhitespace()
      try parser.expect(":")
      members.append((key, try parser.value(depth: depth)))
    }
    return .object(members)
  }

  private mutating func array(depth: Int) throws -> JSONValue {
    var elements: [JSONValue] = []
    try sequence(closing: "]", depth: depth) { elements.append(try $0.value(depth: depth)) }
    return .array(elements)
  }

  /// Reads the elements of an object or array after its opening byte, calling `element`
  /// at each one (after whitespace) until `closing`, with commas in between.
  private mutating func sequence(
    closing: Unicode.Scalar, depth: Int, element: (inout JSONParser) throws -> Void
  ) throws {
    guard depth <= Self.maximumDepth else { throw failure("nested deeper than \(Self.maximumDepth)") }
    position += 1
    skipWhitespace()
    if position < bytes.count, bytes[position] == UInt8(ascii: closing) {
      position += 1
      return
    }
    while true {
      skipWhitespace()
      try element(&self)
      skipWhitespace()
      guard position < bytes.count else { throw failure("unexpected end before \(closing)") }
      position += 1
      if bytes[position - 1] == UInt8(ascii: closing) { return }
      guard bytes[position - 1] == UInt8(ascii: ",") else {
        position -= 1
        throw failure("expected , or \(closing)")
      }
    }
  }

  private mutating func number() throws -> String {
    let start = position
    func digits() -> Int {
      let first = position
      while position < bytes.count, bytes[position] >= 0x30, bytes[position] <= 0x39 { position += 1 }
      return position - first
    }
    if position < bytes.count, bytes[position] == UInt8(ascii: "-") { position += 1 }
    let integerStart = position
    guard digits() > 0 else { throw failure("expected a value") }
    if bytes[integerStart] == 0x30, position - integerStart > 1 { throw failure("leading zero in a number") }
    if position < bytes.count, bytes[position] == UInt8(ascii: ".") {
      position += 1
      guard digits() > 0 else { throw failure("expected digits after .") }
    }
    if position < bytes.count, bytes[position] | 0x20 == UInt8(ascii: "e") {
      position += 1
      if position < bytes.count, bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-") {
        position += 1
      }
      guard digits() > 0 else { throw failure("expected exponent digits") }
    }
    return String(decoding: bytes[start..<position], as: UTF8.self)
  }

  private mutating func string() throws -> String {
    position += 1  // the opening quote
    var scalars = String.UnicodeScalarView()
    var runStart = position
    func flushRun() throws {
      guard let run = String(validating: bytes[runStart..<position], as: UTF8.self) else {
        throw failure("invalid UTF-8 in a string")
      }
      scalars.append(contentsOf: run.unicodeScalars)
    }
    while true {
      guard position < bytes.count else { throw failure("unterminated string") }
      let byte = bytes[position]
      if byte == UInt8(ascii: "\"") {
        try flushRun()
        position += 1
        return String(scalars)
      }
      guard byte >= 0x20 else { throw failure("control character in a string") }
      guard byte == UInt8(ascii: "\\") else {
        position += 1
        continue
      }
      try flushRun()
      position += 1
      guard position < bytes.count else { throw failure("unterminated escape") }
      let escape = bytes[position]
      position += 1
      switch escape {
      case UInt8(ascii: "\""): scalars.append("\"")
      case UInt8(ascii: "\\"): scalars.append("\\")
      case UInt8(ascii: "/"): scalars.append("/")
      case UInt8(ascii: "b"): scalars.append("\u{08}")
      case UInt8(ascii: "f"): scalars.append("\u{0C}")
      case UInt8(ascii: "n"): scalars.append("\n")
      case UInt8(ascii: "r"): scalars.append("\r")
      case UInt8(ascii: "t"): scalars.append("\t")
      case UInt8(ascii: "u"):
        var code = try hex4()
        if (0xD800..<0xDC00).contains(code) {
          try expect("\\u")
          let low = try hex4()
          guard (0xDC00..<0xE000).contains(low) else { throw failure("unpaired surrogate") }
          code = 0x10000 + (code - 0xD800) << 10 + (low - 0xDC00)
        }
        guard let scalar = Unicode.Scalar(code) else { throw failure("unpaired surrogate") }
        scalars.append(scalar)
      default: throw failure("unknown escape")
      }
      runStart = position
    }
  }

  private mutating func hex4() throws -> UInt32 {
    guard position + 4 <= bytes.count else { throw failure("bad \\u escape") }
    var value: UInt32 = 0
    for byte in bytes[position..<position + 4] {
      guard let digit = Character(Unicode.Scalar(byte)).hexDigitValue else { throw failure("bad \\u escape") }
      value = value << 4 | UInt32(digit)
    }
    position += 4
    return value
  }
}
