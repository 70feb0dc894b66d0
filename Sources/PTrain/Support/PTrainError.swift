/// An error that the engine reports to its user as one line of text.
///
/// Every failure that bad input can cause surfaces as a `PTrainError` whose
/// `description` names the file, value or limit at fault, so a program can show it on a
/// single line. An error about one of the library's options (`TrainingOptions.threads`,
/// say) names the option as the API does and records it in `option`, so that a front end
/// can speak of its own name for it instead: the `ptrain` CLI says `--threads`.
public struct PTrainError: Error, CustomStringConvertible, Equatable {
  /// The one-line message, without a trailing newline.
  public let description: String
  /// The option the message begins with, as the API names it (`threads`, `batchSize`,
  /// `learningRate`, …), or nil when the error is not about one option.
  public let option: String?

  public init(_ description: String) {
    self.description = description
    option = nil
  }

  /// An error about `option`: its description is the option's name, then `complaint`,
  /// as in "threads must be at least 1, got 0".
  public init(option: String, _ complaint: String) {
    description = "\(option) \(complaint)"
    self.option = option
  }

  /// The same error with its option called `name` instead (a command-line flag, say).
  public func namingOption(_ name: String) -> PTrainError {
    guard let option, description.hasPrefix(option) else { return self }
    return PTrainError(option: name, String(description.dropFirst(option.count + 1)))
  }
}
