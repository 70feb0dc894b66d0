import ArgumentParser
import PTrain

/// `--validation-split`, `--save-best` and `--early-stop`.
struct ValidationOptions: ParsableArguments {
  @Option(
    help: ArgumentHelp(
      "Hold out N training images, or a fraction F of them (0.1), for validation: chosen by --seed alone, the same at any --threads, never trained on. Each epoch is evaluated on them; the test set is evaluated once, at the end. (default: none)",
      valueName: "N|F"))
  var validationSplit: String?

  @Option(
    help: ArgumentHelp(
      "Keep the checkpoint of the epoch with the best validation accuracy at PATH (its epoch in best_epoch); needs --validation-split.",
      valueName: "PATH"))
  var saveBest: String?

  @Option(
    parsing: .unconditional,
    help: ArgumentHelp(
      "Stop after P epochs in a row without a better validation accuracy; needs --validation-split.", valueName: "P"))
  var earlyStop: Int?

  /// The flags a resumed run keeps: where the best epoch goes and the early stop.
  var resumeFlags: [String] {
    (saveBest.map { ["--save-best", $0] } ?? []) + (earlyStop.map { ["--early-stop", String($0)] } ?? [])
  }

  /// `--validation-split` parsed; a usage error when malformed.
  func split() throws -> ValidationSplit? {
    try usage { try validationSplit.map(ValidationSplit.init(parsing:)) }
  }

  /// Refuses, before any training, what cannot work: `--save-best` or `--early-stop`
  /// without a split, a bad patience, an unwritable `--save-best` path.
  func check(resumedSplit: Bool = false) throws {
    let splitting = validationSplit != nil || resumedSplit
    if let earlyStop {
      guard earlyStop >= 1 else { throw ValidationError("--early-stop must be at least 1, got \(earlyStop)") }
      guard splitting else { throw ValidationError("--early-stop needs --validation-split, the images it watches") }
    }
    if let saveBest {
      guard splitting else { throw ValidationError("--save-best needs --validation-split, the images it judges by") }
      try checkOutputPath(saveBest, flag: "--save-best")
    }
  }
}

/// The best validation accuracy so far, where its checkpoint goes, and when to stop early.
/// Carried in every checkpoint's metadata (`best_validation_accuracy`, `best_epoch`), so
/// that a resumed run judges and stops as the uninterrupted one would.
struct BestEpochKeeper: Sendable {
  let path: String?
  let patience: Int?
  private(set) var bestAccuracy: Double?
  private(set) var bestEpoch = 0

  init(path: String?, patience: Int?, resumedFrom metadata: [String: String] = [:]) {
    self.path = path
    self.patience = patience
    bestAccuracy = metadata["best_validation_accuracy"].flatMap(Double.init)
    bestEpoch = metadata["best_epoch"].flatMap { Int($0) } ?? 0
  }

  /// What checkpoints carry about the best epoch.
  var metadata: [String: String] {
    guard let bestAccuracy else { return [:] }
    return ["best_validation_accuracy": "\(bestAccuracy)", "best_epoch": String(bestEpoch)]
  }

  /// Takes a finished epoch's validation accuracy: when it is the best so far, records it
  /// and saves the trainer's state to `path` (rank 0 only) with `extra` and the best
  /// epoch's metadata. Returns whether to stop: `patience` epochs without improvement.
  mutating func epochFinished(_ report: EpochReport, trainer: Trainer, extra: [String: String]) throws -> Bool {
    guard let accuracy = report.test?.accuracy else { return false }
    if bestAccuracy.map({ accuracy > $0 }) ?? true {
      bestAccuracy = accuracy
      bestEpoch = report.epoch
      if let path, job.rank == 0 {
        try Checkpoint.save(trainer.state(), to: path, extra: extra.merging(metadata) { _, own in own })
      }
    }
    return patience.map { report.epoch - bestEpoch >= $0 } ?? false
  }
}
