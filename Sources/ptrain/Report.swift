import Foundation
import PTrain
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Human-readable results: the per-class table and confusion matrix, then the headline
/// (test accuracy and loss) last, so that it is what stays on screen.
enum Report {
  /// The headline of a training run: test accuracy and loss (or `set`'s), throughput
  /// and time.
  static func headline(evaluation e: Evaluation, summary: TrainingSummary, of set: String = "test") -> String {
    headline(evaluation: e, of: set)
      + String(format: "  %.0f img/s  %.1f s", summary.imagesPerSecond, summary.seconds)
  }

  /// Test accuracy (or `set`'s, as a percentage) and mean loss ("not finite" when
  /// outputs overflowed).
  static func headline(evaluation e: Evaluation, of set: String = "test") -> String {
    String(format: "\(set) accuracy %.2f%%  \(set) loss ", e.accuracy * 100)
      + (e.loss.isFinite ? String(format: "%.4f", e.loss) : "not finite")
  }

  /// Says on stderr, when some of `evaluation`'s examples had non-finite outputs, how many
  /// and what that means for the loss.
  static func warnAboutOverflow(_ e: Evaluation, of set: String) {
    guard e.nonFiniteLosses > 0 else { return }
    Terminal.warn(
      "the outputs of \(e.nonFiniteLosses) of \(e.count) \(set) images overflowed (their logits are not finite), so the \(set) loss is not a number; are these images standardised as the training images were (--normalize)?"
    )
  }

  /// The per-class precision, recall, F1 and support, with `classNames` beside each
  /// label, then the confusion matrix and the parameters' SHA-256.
  static func tables(evaluation e: Evaluation, classNames: [String], sha256: String) -> String {
    let nameWidth = max(classNames.map(\.count).max() ?? 0, 5)
    func name(_ index: Int) -> String {
      let text = index < classNames.count ? classNames[index] : String(index)
      return text == String(index) ? text : "\(index) \(text)"
    }
    let labelWidth = max(nameWidth, (0..<e.classes.count).map { name($0).count }.max() ?? 0)
    func label(_ index: Int) -> String { name(index).padding(toLength: labelWidth, withPad: " ", startingAt: 0) }
    var lines: [String] = []
    lines.append(
      "class".padding(toLength: labelWidth, withPad: " ", startingAt: 0) + "  precision  recall      f1  support")
    for (index, c) in e.classes.enumerated() {
      lines.append(label(index) + String(format: "  %9.4f  %6.4f  %6.4f  %7d", c.precision, c.recall, c.f1, c.support))
    }
    lines.append("")
    lines.append("confusion matrix (rows: true class, columns: predicted)")
    lines.append(
      String(repeating: " ", count: labelWidth) + (0..<e.confusion.count).map { String(format: "%6d", $0) }.joined())
    for (index, row) in e.confusion.enumerated() {
      lines.append(label(index) + row.map { String(format: "%6d", $0) }.joined())
    }
    lines.append("")
    lines.append("parameters sha256 \(sha256)")
    return lines.joined(separator: "\n")
  }

  /// The per-phase split of training time, one line per phase.
  static func profile(_ profile: PhaseProfile) -> String {
    var lines = ["", "where training time went (seconds per worker, averaged over workers)"]
    for (name, seconds) in profile.phases where name != "communicate" || job.size > 1 {
      lines.append(
        name.padding(toLength: 10, withPad: " ", startingAt: 0)
          + String(format: "%8.3f s  %5.1f%%", seconds, 100 * seconds / max(profile.total, 1e-12)))
    }
    return lines.joined(separator: "\n")
  }
}

/// The columns of the terminal on stderr (80 when it does not say), read afresh at each
/// call so that a resized window is followed. Cost: one ioctl.
func terminalColumns() -> Int {
  var size = winsize()
  guard ioctl(2, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return 80 }
  return Int(size.ws_col)
}

/// One progress line that fits `columns` terminal columns, as tqdm and Keras fit theirs:
/// the bar shrinks first, then the least useful fields go (img/s, the step count, the
/// epoch's ETA, the bar), and the epoch and the run's ETA stay.
enum ProgressLine {
  struct Fields {
    var epoch: Int, epochs: Int
    var step: Int, stepsPerEpoch: Int
    var imagesPerSecond: Double
    var loss: Double
    /// Seconds left in this epoch and in the whole run.
    var epochETA: Double, runETA: Double
  }

  /// The widest line that fits in `columns - 1` columns (the last column would wrap on
  /// some terminals).
  static func render(_ f: Fields, columns: Int) -> String {
    let room = max(columns - 1, 1)
    let epoch = "epoch \(f.epoch)/\(f.epochs)"
    let steps = "\(f.step)/\(f.stepsPerEpoch)"
    let rate = String(format: "%.0f img/s", f.imagesPerSecond)
    let loss = String(format: "loss %.4f", f.loss)
    let etas =
      f.epochs > f.epoch
      ? "ETA \(clockTime(f.epochETA)) (run \(clockTime(f.runETA)))" : "ETA \(clockTime(f.runETA))"
    let shortETA = "ETA \(clockTime(f.runETA))"
    let fraction = Double(f.step) / Double(max(f.stepsPerEpoch, 1))
    // From the fullest line to the barest; the first that fits wins.
    let layouts: [[String?]] = [
      [epoch, nil, steps, rate, loss, etas],
      [epoch, nil, steps, loss, etas],
      [epoch, nil, loss, etas],
      [epoch, nil, loss, shortETA],
      [epoch, loss, shortETA],
      [epoch, shortETA],
      [epoch],
    ]
    for layout in layouts {
      let text = layout.compactMap { $0 }
      let fixed = text.reduce(0) { $0 + $1.count } + 2 * (layout.count - 1)
      guard layout.contains(where: { $0 == nil }) else {
        if fixed <= room { return text.joined(separator: "  ") }
        continue
      }
      let barWidth = min(room - fixed, 30)
      guard barWidth >= 10 else { continue }
      let filled = min(Int(fraction * Double(barWidth)), barWidth)
      let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: barWidth - filled)
      return layout.map { $0 ?? bar }.joined(separator: "  ")
    }
    return String(epoch.prefix(room))
  }

  /// `seconds` as m:ss, or h:mm:ss from an hour.
  static func clockTime(_ seconds: Double) -> String {
    let whole = max(Int(seconds.isFinite ? seconds.rounded() : 0), 0)
    if whole >= 3600 { return String(format: "%d:%02d:%02d", whole / 3600, whole / 60 % 60, whole % 60) }
    return String(format: "%d:%02d", whole / 60, whole % 60)
  }
}

/// Renders training events on stderr: a redrawn progress line that fits the terminal on
/// a terminal, else one plain line per epoch. Redraws at most ten times a second. Safe
/// from any thread: `Trainer.train` calls it from a worker for steps and from its caller
/// for epochs.
final class ProgressReporter: Sendable {
  private let enabled: Bool
  private let interactive: Bool
  /// What each epoch is evaluated on: "test", or "val" for a validation split.
  private let evaluated: String
  private let clock = ContinuousClock()
  private let marks: Mutex<Marks>

  /// When the line was last drawn, and where the pace is measured from.
  private struct Marks {
    var lastDraw: ContinuousClock.Instant
    /// When this reporter saw its first step, and how many of the run's steps were done
    /// then: the run's pace is measured from there (a resumed run starts part-way).
    var start: (time: ContinuousClock.Instant, step: Int)?
    /// When the current epoch's first step was seen, and its images then.
    var epochStart: (time: ContinuousClock.Instant, epoch: Int, images: Int)?
  }

  init(enabled: Bool, interactive: Bool, evaluated: String = "test") {
    self.evaluated = evaluated
    self.enabled = enabled
    self.interactive = interactive
    marks = Mutex(Marks(lastDraw: clock.now))
  }

  func handle(_ event: TrainingEvent) {
    guard enabled else { return }
    switch event {
    case .step(let p):
      guard interactive else { return }
      let now = clock.now
      let runStep = (p.epoch - 1) * p.stepsPerEpoch + p.step
      let fields: ProgressLine.Fields? = marks.withLock { marks in
        if marks.start == nil { marks.start = (now, runStep - 1) }
        if marks.epochStart?.epoch != p.epoch { marks.epochStart = (now, p.epoch, p.images) }
        guard p.step == p.stepsPerEpoch || now - marks.lastDraw >= .milliseconds(100) else { return nil }
        marks.lastDraw = now
        let start = marks.start!
        let epochStart = marks.epochStart!
        let secondsPerStep = (now - start.time).seconds / Double(max(runStep - start.step, 1))
        let epochSeconds = (now - epochStart.time).seconds
        // Until the epoch has run a while, its pace is the run's (which includes evaluation).
        let imagesPerSecond =
          epochSeconds > 0.1
          ? Double(p.images - epochStart.images) / epochSeconds : Double(p.images) / Double(p.step) / secondsPerStep
        return ProgressLine.Fields(
          epoch: p.epoch, epochs: p.epochs, step: p.step, stepsPerEpoch: p.stepsPerEpoch,
          imagesPerSecond: imagesPerSecond, loss: p.loss,
          epochETA: Double(p.stepsPerEpoch - p.step) * secondsPerStep,
          runETA: Double(p.epochs * p.stepsPerEpoch - runStep) * secondsPerStep)
      }
      if let fields {
        Terminal.progress("\r" + ProgressLine.render(fields, columns: terminalColumns()) + "\u{1B}[K")
      }
    case .epochFinished(let r):
      let line = Self.epochLine(r, columns: interactive ? terminalColumns() : Int.max, evaluated: evaluated)
      if interactive { Terminal.progress("\r\u{1B}[K") }
      Terminal.error(line)
    }
  }

  /// The line that stays for a finished epoch. On a narrow terminal the time, then the
  /// throughput, then the losses are left out, so that it never wraps.
  static func epochLine(_ r: EpochReport, columns: Int, evaluated: String = "test") -> String {
    var fields: [(text: String, priority: Int)] = [
      ("epoch \(r.epoch)", 0), (String(format: "loss %.4f", r.trainLoss), 3),
      (String(format: "acc %.2f%%", r.trainAccuracy * 100), 1),
    ]
    if let test = r.test {
      fields += [
        (String(format: "\(evaluated) loss %.4f", test.loss), 3),
        (String(format: "\(evaluated) acc %.2f%%", test.accuracy * 100), 0),
      ]
    }
    fields += [(String(format: "%.0f img/s", r.imagesPerSecond), 4), (String(format: "%.1f s", r.trainSeconds), 5)]
    for dropped in stride(from: 6, through: 1, by: -1) {
      let line = fields.filter { $0.priority < dropped }.map(\.text).joined(separator: "  ")
      if line.count < columns || dropped == 1 { return line }
    }
    return fields[0].text
  }

  /// Ends a half-drawn progress bar so that the next line starts clean.
  func finishLine() {
    if enabled && interactive { Terminal.progress("\r\u{1B}[K") }
  }
}

extension Duration {
  /// The duration in seconds.
  var seconds: Double {
    let (s, attoseconds) = components
    return Double(s) + Double(attoseconds) * 1e-18
  }
}
