/// An error that the engine reports to its user as one line of text.
///
/// Every failure that bad input can cause surfaces as a `PTrainError` whose
/// `description` names the file, value or limit at fault, so the CLI can print it
/// on a single line and exit non-zero.
public struct PTrainError: Error, CustomStringConvertible, Equatable {
  /// The one-line message, without a trailing newline.
  public let description: String

  public init(_ description: String) {
    self.description = description
  }
}
