import ArgumentParser
import Foundation
import PTrain

#if canImport(Glibc)
  import Glibc
#endif

/// `ptrain`: trains and inspects small CNNs. `train` is the default subcommand, so
/// `ptrain --threads 2` trains.
@main
struct PTrainCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ptrain",
    abstract: "Data-parallel CNN training on pinned CPU cores.",
    discussion: "Run `ptrain help train` for the training flags.",
    version: PTrainVersion.description,
    subcommands: [
      Train.self, Evaluate.self, Predict.self, Finetune.self, Summary.self, Bench.self, TopologyCommand.self,
      ReportCommand.self,
      GradientCommand.self,
    ],
    defaultSubcommand: Train.self)

  /// Parses and runs, turning every failure into one line on stderr and a non-zero
  /// exit: 64 for bad command-line usage, 1 for errors while running.
  static func main() {
    Terminal.holdStandardDescriptors()
    do {
      job = try ProcessGroup.world()
      var command = try parseAsRoot()
      try command.run()
      job.finish()
    } catch let error as PTrainError {
      Terminal.fail("\(error.inFlagTerms)", code: 1)
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
    throw ValidationError(error.inFlagTerms.description)
  }
}

extension PTrainError {
  /// The flags that set the library's options, by the options' names.
  static let flags = [
    "threads": "--threads", "epochs": "--epochs", "batchSize": "--batch-size", "learningRate": "--learning-rate",
    "cpus": "--cpus", "momentum": "--momentum", "nesterov": "--nesterov", "weightDecay": "--weight-decay",
    "warmupSteps": "--warmup-steps", "labelSmoothing": "--label-smoothing",
  ]

  /// The error as the CLI says it: an option of the library named by its flag
  /// ("--threads must be at least 1" for the library's "threads must be at least 1").
  var inFlagTerms: PTrainError { option.flatMap { Self.flags[$0] }.map(namingOption) ?? self }
}

/// The processes of this run: one, or the ranks mpirun started (joined before the
/// command line is parsed). Set once by `main`, before any other thread exists.
nonisolated(unsafe) var job = ProcessGroup.single

/// Where the CLI writes: results on stdout, progress, warnings and errors on stderr.
/// Under MPI only rank 0 writes; the other ranks do the same work silently.
enum Terminal {
  /// Whether stderr is an interactive terminal (progress bars) or a file (plain lines).
  static let stderrIsTTY = isatty(2) == 1

  /// Makes sure descriptors 0, 1 and 2 are open. A closed one is held by a read-only
  /// descriptor of `/`, so that writing to it fails (and is reported) instead of landing
  /// in whatever file ptrain opens next, which would otherwise get its number.
  static func holdStandardDescriptors() {
    for descriptor in Int32(0)...2 where fcntl(descriptor, F_GETFD) == -1 && errno == EBADF {
      let placeholder = open("/", O_RDONLY | O_DIRECTORY)
      if placeholder >= 0 && placeholder != descriptor {
        dup2(placeholder, descriptor)
        close(placeholder)
      }
    }
  }

  /// Writes all of `text` to `descriptor` (on rank 0 only, unless `anyRank`); returns the
  /// `errno` of a failed write.
  private static func write(_ text: String, to descriptor: Int32, anyRank: Bool = false) -> Int32? {
    guard job.rank == 0 || anyRank else { return nil }
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
      let count = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
      if count < 0 && errno == EINTR { continue }
      guard count > 0 else { return count < 0 ? errno : EIO }
      bytes = bytes.dropFirst(count)
    }
    return nil
  }

  /// `text` with every control character but the newline (escape sequences, carriage
  /// returns, C1 controls, which a file name or a checkpoint's metadata may carry) written
  /// as a visible `\x1B`, so that no input can move the cursor, clear the screen or forge
  /// a line of ptrain's output. Cost: O(text).
  static func visible(_ text: String) -> String {
    guard text.unicodeScalars.contains(where: isHidden) else { return text }
    var result = ""
    for scalar in text.unicodeScalars {
      if isHidden(scalar) {
        result +=
          scalar.value < 0x100 ? String(format: "\\x%02X", scalar.value) : String(format: "\\u%04X", scalar.value)
      } else {
        result.unicodeScalars.append(scalar)
      }
    }
    return result
  }

  private static func isHidden(_ scalar: Unicode.Scalar) -> Bool {
    scalar != "\n" && (scalar.properties.generalCategory == .control || scalar == "\u{2028}" || scalar == "\u{2029}")
  }

  /// Writes `text` and a newline to stdout, the channel of results, with control
  /// characters made visible. Throws when the write fails (a full disk, a closed stdout),
  /// so that a lost result is an error.
  static func output(_ text: String) throws {
    if let code = write(visible(text) + "\n", to: 1) {
      throw PTrainError("cannot write the results to standard output: \(String(cString: strerror(code)))")
    }
  }

  /// Writes `text` to stderr as it is; a failure there has nowhere to be reported.
  static func progress(_ text: String) { _ = write(text, to: 2) }

  /// Writes `line` and a newline to stderr, control characters made visible.
  static func error(_ line: String) { progress(visible(line) + "\n") }

  static func warn(_ text: String) { error("ptrain: warning: \(text)") }

  /// Reports `text` and exits with `code`; under MPI, ends every rank with it. Rank 0
  /// reports at once what usually every rank meets (bad flags, a non-finite gradient); the
  /// others wait five seconds (rank 0's MPI_Abort takes over two on a loaded machine) for rank 0 to end the job, then report what only they met.
  static func fail(_ text: String, code: Int32) -> Never {
    let line = visible(text).replacingOccurrences(of: "\n", with: "\\n")  // one line, whatever a path holds
    if job.rank == 0 {
      error("ptrain: error: \(line)")
    } else {
      sleep(5)
      _ = write("ptrain: rank \(job.rank): error: \(line)\n", to: 2, anyRank: true)
    }
    job.abort(code: code)
  }
}
