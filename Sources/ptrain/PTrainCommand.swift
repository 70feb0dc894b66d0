import ArgumentParser
import Foundation
import PTrain

/// `ptrain`: trains and inspects the MNIST CNN. `train` is the default subcommand, so
/// `ptrain --threads 2` trains.
@main
struct PTrainCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ptrain",
    abstract: "Data-parallel CNN training on pinned CPU cores.",
    discussion: "Run `ptrain help train` for the training flags.",
    subcommands: [Train.self, Evaluate.self, Finetune.self, Bench.self, TopologyCommand.self],
    defaultSubcommand: Train.self)

  /// Parses and runs, turning every failure into one line on stderr and a non-zero
  /// exit: 64 for bad command-line usage, 1 for errors while running.
  static func main() {
    do {
      var command = try parseAsRoot()
      try command.run()
    } catch let error as PTrainError {
      Terminal.fail("\(error)", code: 1)
    } catch {
      let code = exitCode(for: error)
      if code == .success { exit(withError: error) }  // --help, --version
      let message =
        message(for: error)
        .split(separator: "\n").first.map(String.init) ?? "invalid arguments"
      let text = message.hasPrefix("Error: ") ? String(message.dropFirst(7)) : message
      Terminal.fail(text, code: code == .validationFailure ? 64 : code.rawValue)
    }
  }
}

/// Runs `body`, reporting its `PTrainError` as bad usage (exit 64) rather than as a
/// runtime failure (exit 1). For checks of flag values and their combinations.
func usage<T>(_ body: () throws -> T) throws -> T {
  do {
    return try body()
  } catch let error as PTrainError {
    throw ValidationError(error.description)
  }
}

/// Where the CLI writes: results on stdout, progress, warnings and errors on stderr.
enum Terminal {
  /// Whether stderr is an interactive terminal (progress bars) or a file (plain lines).
  static let stderrIsTTY = isatty(2) == 1

  static func error(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
  }

  static func warn(_ text: String) { error("ptrain: warning: \(text)") }

  static func fail(_ text: String, code: Int32) -> Never {
    error("ptrain: error: \(text)")
    Foundation.exit(code)
  }
}
