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
/// Carried in every checkpoint's metadata (`best_validation_accuracy`, `best_epoch`,
/// `save_best`, `early_stop`), so that a resumed run judges, saves and stops as the
/// uninterrupted one would without repeating the flags.
struct BestEpochKeeper: Sendable {
  let path: String?
  let patience: Int?
  private(set) var bestAccuracy: Double?
  private(set) var bestEpoch = 0

  init(path: String?, patience: Int?) {
    self.path = path
    self.patience = patience
  }

  /// The keeper of a run resumed from `checkpoint` after `epochsCompleted` epochs: its
  /// best epoch, and its `--save-best` and `--early-stop` unless given again. Throws a
  /// one-line error for fields out of range, or when the run already stopped early and
  /// no other patience is given.
  init(path: String?, patience: Int?, resumedFrom metadata: [String: String], epochsCompleted: Int, file: String) throws
  {
    self.path = path ?? metadata["save_best"]
    let savedPatience = try metadata["early_stop"].map { text in
      guard let value = Int(text), value >= 1 else {
        throw PTrainError("\(file): __metadata__.early_stop is not an integer ≥ 1")
      }
      return value
    }
    self.patience = patience ?? savedPatience
    switch (metadata["best_validation_accuracy"], metadata["best_epoch"]) {
    case (nil, nil): break
    case (let accuracy?, let epoch?):
      guard let accuracy = Double(accuracy), (0...1).contains(accuracy), let epoch = Int(epoch),
        (1...max(epochsCompleted, 1)).contains(epoch)
      else {
        throw PTrainError(
          "\(file): __metadata__.best_validation_accuracy must be from 0 to 1 and best_epoch an epoch it finished")
      }
      (bestAccuracy, bestEpoch) = (accuracy, epoch)
    default:
      throw PTrainError("\(file): __metadata__ has one of best_validation_accuracy and best_epoch without the other")
    }
    if let stopped = metadata["early_stopped_after_epoch"], patience == nil {
      throw ValidationError(
        "\(file) stopped early after epoch \(stopped); pass --early-stop with a larger patience to train on")
    }
  }

  /// What checkpoints carry about the best epoch and the flags that watch it.
  var metadata: [String: String] {
    var fields: [String: String] = [:]
    if let bestAccuracy {
      fields["best_validation_accuracy"] = "\(bestAccuracy)"
      fields["best_epoch"] = String(bestEpoch)
    }
    if let path { fields["save_best"] = path }
    if let patience { fields["early_stop"] = String(patience) }
    return fields
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
