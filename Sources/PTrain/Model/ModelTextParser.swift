/// Reads the model text, token by token, remembering where each token began for errors.
/// Each layer kind reads its own arguments with `integer`, `square`, `peek` and `next`
/// (see `LayerKind.parse`).
package struct ModelTextParser {
  private let scalars: [Unicode.Scalar]
  private var position = 0

  init(_ text: String) { scalars = Array(text.unicodeScalars) }

  /// A one-line error: `expected` was wanted at `start` (a position in the text).
  package func failure(_ expected: String, at start: Int) -> PTrainError {
    let found = start < scalars.count ? "\"\(token(at: start).text)\"" : "the end"
    return PTrainError("model text, position \(start + 1): expected \(expected), found \(found)")
  }

  private func isSeparator(_ scalar: Unicode.Scalar) -> Bool { scalar == " " || scalar == "\t" || scalar == "\n" }

  /// The characters that are tokens of their own: the comma between layers, and the
  /// parentheses and semicolon of a residual block.
  private static let punctuation: Set<Unicode.Scalar> = [",", "(", ")", ";"]

  /// The token starting at `start` (after whitespace): a word or one punctuation mark.
  private func token(at start: Int) -> (text: String, start: Int, end: Int) {
    var begin = start
    while begin < scalars.count, isSeparator(scalars[begin]) { begin += 1 }
    guard begin < scalars.count else { return ("", begin, begin) }
    if Self.punctuation.contains(scalars[begin]) { return (String(scalars[begin]), begin, begin + 1) }
    var end = begin
    while end < scalars.count, !isSeparator(scalars[end]), !Self.punctuation.contains(scalars[end]) { end += 1 }
    var text = String.UnicodeScalarView()
    text.append(contentsOf: scalars[begin..<end])
    return (String(text).lowercased(), begin, end)
  }

  /// The next token without consuming it.
  package func peek() -> (text: String, start: Int, end: Int) { token(at: position) }

  /// The next token and where it began, consumed.
  package mutating func next() -> (text: String, start: Int) {
    let found = peek()
    position = found.end
    return (found.text, found.start)
  }

  /// The next token as an integer in `range`, or an error naming `what`.
  package mutating func integer(_ what: String, in range: ClosedRange<Int>) throws -> Int {
    let (text, start) = next()
    guard let value = Int(text), range.contains(value) else {
      throw failure("\(what) (an integer from \(range.lowerBound) to \(range.upperBound))", at: start)
    }
    return value
  }

  /// `NxN`, square.
  package mutating func square(_ what: String, in range: ClosedRange<Int>) throws -> Int {
    let (text, start) = next()
    let parts = text.split(separator: "x", omittingEmptySubsequences: false)
    guard parts.count == 2, let a = Int(parts[0]), let b = Int(parts[1]), a == b, range.contains(a) else {
      throw failure("\(what) as KxK (square, K from \(range.lowerBound) to \(range.upperBound))", at: start)
    }
    return a
  }

  /// The whole text: an optional input shape, then layers separated by commas.
  mutating func model() throws -> (ImageShape?, [Layer]) {
    var input: ImageShape?
    if peek().text == "input" {
      _ = next()
      let (text, start) = next()
      let parts = text.split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
      guard parts.count == 3, parts.allSatisfy({ ($0 ?? 0) >= 1 && ($0 ?? 0) <= 4096 }),
        let height = parts[0], let width = parts[1], let channels = parts[2], channels <= 64
      else { throw failure("the input shape as HxWxC (for example 28x28x1)", at: start) }
      input = ImageShape(height: height, width: width, channels: channels)
      let (comma, at) = next()
      guard comma == "," else { throw failure("a comma after the input shape", at: at) }
    }
    let (layers, end, at) = try layerList(endingWith: [""])
    guard end.isEmpty else { throw failure("a comma or the end", at: at) }
    return (input, layers)
  }

  /// Layers separated by commas, up to and including one of `ends` (`""` is the end of
  /// the text): the layers, the end found and where it was.
  package mutating func layerList(endingWith ends: Set<String>) throws -> ([Layer], end: String, at: Int) {
    var layers: [Layer] = []
    while true {
      layers.append(try layer())
      let (text, start) = next()
      if ends.contains(text) { return (layers, text, start) }
      guard text == "," else {
        let wanted = ends.map { $0.isEmpty ? "the end" : "\"\($0)\"" }.sorted().joined(separator: " or ")
        throw failure("a comma or \(wanted)", at: start)
      }
    }
  }

  /// One layer: its kind's word, then what that kind reads (see `Layer.kinds`).
  private mutating func layer() throws -> Layer {
    let (word, start) = next()
    guard let kind = Layer.kinds.first(where: { $0.word == word }) else {
      let words = Layer.kinds.map { $0.word }
      throw failure(
        "a layer (\(words.dropLast().joined(separator: ", ")) or \(words.last!))", at: start)
    }
    return try kind.layer(parsing: &self)
  }
}
