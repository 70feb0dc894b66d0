/// A number in the JSON the CLI prints that may not be finite (a loss when outputs
/// overflowed): written as the number, or as `null` when it is not finite, since JSON has
/// no NaN or infinity; `null` reads back as NaN.
struct FiniteNumber: Codable, Equatable {
  let value: Double

  init(_ value: Double) { self.value = value }

  /// The value when it is finite, else nil.
  var finite: Double? { value.isFinite ? value : nil }

  init(from decoder: any Decoder) throws {
    let container = try decoder.singleValueContainer()
    value = container.decodeNil() ? .nan : try container.decode(Double.self)
  }

  func encode(to encoder: any Encoder) throws {
    var container = encoder.singleValueContainer()
    if let finite { try container.encode(finite) } else { try container.encodeNil() }
  }
}
