import Dispatch
import Foundation
import PTrain
import Synchronization

/// Runs a prepared trainer the way the CLI promises: progress, checkpoints every N
/// steps and at the end, a clean stop on Ctrl-C or SIGTERM, and the final report.
struct TrainingSession: Sendable {
  let trainer: Trainer
  let dataset: Dataset
  let train: LabeledImages
  let checkpoints: CheckpointOptions
  let output: OutputOptions
  /// Extra `__metadata__` for every checkpoint (the data's name, the source model, …).
  let metadata: [String: String]
  /// What the run does, for its first line: "training", "fine-tuning PATH", ….
  let activity: String
  /// The command that continues this run after an interrupt, less `train --resume PATH`
  /// (the binary as it was invoked, and flags worth keeping).
  var resumeFlags: [String] = []
  /// The images held out of the training data to evaluate each epoch on, when the run
  /// has a validation split; the test set is then evaluated once, at the end.
  var validation: LabeledImages?
  /// The best validation epoch so far, its checkpoint and the early stop.
  var best = BestEpochKeeper(path: nil, patience: nil)

  /// Whether the data has no test set (an image folder without `test/`): the final
  /// figures are then the validation split's.
  var hasNoTestSet: Bool { dataset.imageFolder?.hasTestSet == false }

  /// The run's first line on stderr: what it does, on which data.
  var firstLine: String {
    let total = train.count + (validation?.count ?? 0)
    let images = total == dataset.train.count ? "\(train.count)" : "\(train.count) of \(dataset.train.count)"
    let split = validation.map { ", \($0.count) validation (each epoch)" } ?? ""
    let once = validation == nil ? "" : " (once, at the end)"
    let test =
      hasNoTestSet
      ? "no test set (no test/ folder; the final figures are the validation split's)"
      : "\(dataset.test.count) test images\(once)"
    let size = dataset.imageFolder.map { folder in
      "; images resized to \(folder.size)\(folder.sizeIsMostCommon ? " (the most common size)" : ""), \(folder.channels) channel(s)"
        + "; \(folder.decodedFiles) files decoded in "
        + String(
          format: "%.1f s (%.0f images/s)", folder.decodeSeconds,
          Double(folder.decodedFiles) / max(folder.decodeSeconds, 1e-9))
    }
    return
      "ptrain: \(activity) on \(dataset.name) (\(dataset.directory ?? "bundled")): \(images) train\(split), \(test)\(size ?? "")"
  }

  /// Trains to the end (or until interrupted), saving as asked. Exits 130 on SIGINT and
  /// 143 on SIGTERM once the checkpoint is written; a second signal exits at once.
  func run() throws {
    // Under MPI, rank 0 writes the checkpoints; every rank holds the same state.
    var saving = self.checkpoints
    if job.rank != 0 {
      saving.save = nil
      saving.checkpointEvery = nil
    }
    let checkpoints = saving
    if let path = checkpoints.save { try DestinationLock.acquire(path) }
    if let path = self.best.path, job.rank == 0 { try DestinationLock.acquire(path) }
    let progress = ProgressReporter(
      enabled: !output.quiet, interactive: Terminal.stderrIsTTY, evaluated: validation == nil ? "test" : "val")
    if !output.quiet { Terminal.error(firstLine) }
    let log = try (job.rank == 0 ? output.logdir : nil).map {
      try TrainingLog(
        directory: $0, every: output.logInterval, trainer: trainer, dataset: dataset.name,
        evaluated: validation == nil ? "test" : "validation")
    }
    let best = Mutex(self.best)
    /// Set when the early stop, not a signal, ended the run.
    let stoppedEarly = Atomic<Bool>(false)
    let metadata = self.metadata
    /// What every checkpoint carries: the run's metadata and the best epoch so far.
    let extras: @Sendable () -> [String: String] = { metadata.merging(best.withLock(\.metadata)) { _, new in new } }
    let interrupts = InterruptHandler { [trainer] in trainer.requestStop() }
    let finishingConsequence =
      checkpoints.save == nil ? "exiting after the final evaluation" : "finishing the final checkpoint first"
    /// The periodic checkpoints: the last one written, or why writing one failed.
    let saves = Mutex<(last: (path: String, step: Int)?, error: (any Error)?)>((nil, nil))
    let summary: TrainingSummary
    do {
      summary = try trainer.train(train, evaluatingOn: validation ?? dataset.test) { event in
        // From the last epoch's line on, an interrupt no longer stops a step (none is left)
        // but waits for the final checkpoint: say so before the line appears.
        if case .epochFinished(let report) = event, report.epoch == trainer.options.epochs {
          interrupts.finishing(finishingConsequence)
        }
        progress.handle(event)
        if case .epochFinished(let report) = event, validation != nil {
          do {
            if try best.withLock({ try $0.epochFinished(report, trainer: trainer, extra: metadata) }) {
              stoppedEarly.store(true, ordering: .relaxed)
              trainer.requestStop()
            }
          } catch {
            saves.withLock { $0.error = $0.error ?? error }
            trainer.requestStop()
          }
        }
        log?.record(event, step: trainer.optimizer.step, trainer: trainer)
        // Step events run on a worker while no worker changes the trainer, so its state
        // can be saved here (see `Trainer.train`).
        if case .step = event, let every = checkpoints.checkpointEvery, let path = checkpoints.save,
          trainer.optimizer.step % every == 0
        {
          saves.withLock { saves in
            guard saves.error == nil else { return }
            do {
              try Checkpoint.save(trainer.state(), to: path, extra: extras())
              saves.last = (path, trainer.optimizer.step)
            } catch {
              saves.error = error
              trainer.requestStop()
            }
          }
        }
      }
    } catch let error as PTrainError {
      progress.finishLine()
      let kept =
        saves.withLock(\.last).map { "; the last checkpoint, \($0.path) at step \($0.step), is untouched" } ?? ""
      throw PTrainError(error.inFlagTerms.description + kept)
    }
    if let saveError = saves.withLock(\.error) { throw saveError }
    // A resumed run's history begins with the epochs its checkpoint recorded.
    // Checked before training (`Train.run`), so that no run is lost to it afterwards.
    let earlier = metadata["history"].flatMap { try? RunSummary.history(decoding: $0, of: "the checkpoint") }
    let thisRun = summary.epochs.map { RunSummary.Epoch($0, validating: validation != nil) }
    let history = (earlier ?? []).filter { $0.epoch < thisRun.first?.epoch ?? .max } + thisRun
    var recorded = extras()  // what the checkpoints from here on carry: the history too
    recorded["history"] = String(decoding: try JSONEncoder().encode(history), as: UTF8.self)
    let early = summary.stopped && stoppedEarly.load(ordering: .relaxed) && interrupts.received == nil
    if early {
      progress.finishLine()
      let kept = best.withLock { $0 }
      recorded["early_stopped_after_epoch"] = String(trainer.epochsCompleted)
      Terminal.error(
        "ptrain: early stop after epoch \(trainer.epochsCompleted): no better validation accuracy for \(kept.patience ?? 0) epoch(s); the best was epoch \(kept.bestEpoch)"
      )
    }
    if summary.stopped && !early {
      progress.finishLine()
      let signal = interrupts.received ?? SIGINT
      let position =
        "epoch \(trainer.epochsCompleted + 1), step \(trainer.stepsIntoEpoch) (global step \(trainer.optimizer.step))"
      if let path = checkpoints.save {
        try Checkpoint.save(trainer.state(), to: path, extra: recorded)
        let command = [CommandLine.arguments[0], "train", "--resume", path] + resumeFlags
        Terminal.error(
          "ptrain: interrupted at \(position); checkpoint saved to \(path); continue with: \(shellCommand(command))")
      } else {
        Terminal.error("ptrain: interrupted at \(position); nothing saved (no --save)")
      }
      log?.log.close()
      job.finish()
      exit(128 + signal)
    }
    // Training is complete. An interrupt from here on no longer stops a step: the
    // handler stays armed until the final checkpoint is on disk, then ptrain exits.
    interrupts.finishing(finishingConsequence)
    // With a validation split the epochs were evaluated on it; the test set only now.
    let finalSet = hasNoTestSet ? "validation" : "test"
    let evaluation =
      try hasNoTestSet
      ? summary.finalEvaluation ?? trainer.evaluate(validation!)
      : (validation == nil ? summary.finalEvaluation : nil) ?? trainer.evaluate(dataset.test)
    log?.log.close()
    let run = RunSummary(
      dataset: dataset.name, trainImages: train.count, options: trainer.options, summary: summary,
      evaluation: evaluation, parametersSHA256: trainer.parametersSHA256, pinned: trainer.pool.isPinned,
      profile: output.profile ? trainer.profile : nil, checkpoint: checkpoints.save, model: trainer.model.text,
      classNames: dataset.classNames, history: history, workerCPUs: trainer.pool.boundCPUs, evaluatedOn: finalSet,
      validation: validation.map { images in
        let kept = best.withLock { $0 }
        return RunSummary.Validation(
          images: images.count, bestEpoch: kept.bestEpoch, bestAccuracy: kept.bestAccuracy,
          bestCheckpoint: kept.path, earlyStoppedAfterEpoch: early ? trainer.epochsCompleted : nil)
      })
    // The checkpoint first, then the summary, then the report: a report that cannot be
    // written loses neither, and an interrupt during the final evaluation still gets both.
    if let path = checkpoints.save {
      var extra = recorded
      extra["\(finalSet)_accuracy"] = "\(evaluation.accuracy)"
      extra["\(finalSet)_loss"] = "\(evaluation.loss)"
      try Checkpoint.save(trainer.state(), to: path, extra: extra)
    }
    if output.json { try printJSON(run) }
    Report.warnAboutOverflow(evaluation, of: finalSet)
    var reportError: PTrainError?
    if let path = output.report, job.rank == 0 {
      do { try writeFileAtomically(Array(HTMLReport.render(run).utf8), to: path) } catch let error as PTrainError {
        let kept = [
          checkpoints.save.map { "the checkpoint is saved to \($0)" }, output.json ? "the summary printed" : nil,
        ]
        .compactMap { $0 }
        reportError = PTrainError(
          "--report \(error)" + (kept.isEmpty ? "" : "; \(kept.joined(separator: " and "))"))
      }
    }
    if !output.json {
      if !output.quiet {
        try Terminal.output(
          Report.tables(evaluation: evaluation, classNames: dataset.classNames, sha256: trainer.parametersSHA256))
      }
      if output.profile { try Terminal.output(Report.profile(trainer.profile)) }
      if let path = checkpoints.save { try Terminal.output("checkpoint saved to \(path)") }
      if let path = output.report, reportError == nil { try Terminal.output("report written to \(path)") }
      if let log { try Terminal.output("TensorBoard events written to \(log.log.path)") }
      try Terminal.output(Report.headline(evaluation: evaluation, summary: summary, of: finalSet))
    }
    if let reportError { throw reportError }
    if let signal = interrupts.received {
      progress.finishLine()
      Terminal.error(
        "ptrain: interrupted after training finished; "
          + (checkpoints.save.map { "the final checkpoint is saved to \($0)" } ?? "nothing saved (no --save)"))
      job.finish()
      exit(128 + signal)
    }
    interrupts.disarm()
  }
}

/// `words` as one line a POSIX shell runs as the same command: each word that needs it
/// in single quotes.
func shellCommand(_ words: [String]) -> String {
  let plain = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-./:=@_,%")
  return words.map { word in
    !word.isEmpty && word.allSatisfy(plain.contains)
      ? word : "'" + word.replacingOccurrences(of: "'", with: #"'\''"#) + "'"
  }.joined(separator: " ")
}

/// Turns the first SIGINT or SIGTERM into a stop request and the second into an
/// immediate exit. Signals are received through dispatch sources, not in a signal
/// handler, so the stop request runs as ordinary code.
///
/// `@unchecked Sendable` because the dispatch sources' handlers touch only the fields
/// `lock` guards; `sources` changes only in `init` and `disarm`, on the owner's thread.
final class InterruptHandler: @unchecked Sendable {
  private var sources: [DispatchSourceSignal] = []
  private let lock = NSLock()
  private var first: Int32?
  /// What the first signal makes ptrain do, as said on stderr.
  private var consequence = "stopping after this step"

  /// The first signal received, if any.
  var received: Int32? { lock.withLock { first } }

  init(onFirstSignal: @escaping @Sendable () -> Void) {
    for signalNumber in [SIGINT, SIGTERM] {
      signal(signalNumber, SIG_IGN)
      let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
      source.setEventHandler { [unowned self] in
        // `data` counts the signals since the last call: two quick ones arrive together.
        let (isFirst, consequence) = lock.withLock {
          defer { first = first ?? signalNumber }
          return (first == nil, self.consequence)
        }
        guard isFirst && source.data < 2 else {
          Terminal.error("\nptrain: second interrupt, exiting now")
          _exit(128 + signalNumber)
        }
        Terminal.error("\nptrain: \(consequence) (interrupt again to exit at once)")
        onFirstSignal()
      }
      source.resume()
      sources.append(source)
    }
  }

  /// From now on a first signal no longer stops training (it is over) but lets the run
  /// finish what `consequence` says; the caller then checks `received` and exits.
  func finishing(_ consequence: String) { lock.withLock { self.consequence = consequence } }

  /// Restores the default actions once nothing is left to protect.
  func disarm() {
    for source in sources { source.cancel() }
    signal(SIGINT, SIG_DFL)
    signal(SIGTERM, SIG_DFL)
  }
}
