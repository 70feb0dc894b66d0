import Foundation
import PTrain

/// Human-readable results: the final metrics, per-class table and confusion matrix.
enum Report {
  static func text(evaluation e: Evaluation, summary: TrainingSummary, sha256: String) -> String {
    text(
      evaluation: e, headline: String(format: "  %.0f img/s  %.1f s", summary.imagesPerSecond, summary.seconds),
      sha256: sha256)
  }

  /// The metrics, with `headline` appended to the first line.
  static func text(evaluation e: Evaluation, headline: String, sha256: String) -> String {
    var lines: [String] = []
    lines.append(String(format: "test accuracy %.2f%%  test loss %.4f", e.accuracy * 100, e.loss) + headline)
    lines.append("")
    lines.append("class  precision  recall      f1  support")
    for (index, c) in e.classes.enumerated() {
      lines.append(String(format: "%5d  %9.4f  %6.4f  %6.4f  %7d", index, c.precision, c.recall, c.f1, c.support))
    }
    lines.append("")
    lines.append("confusion matrix (rows: true class, columns: predicted)")
    let header = (0..<e.confusion.count).map { String(format: "%6d", $0) }.joined()
    lines.append("     " + header)
    for (index, row) in e.confusion.enumerated() {
      lines.append(String(format: "%5d", index) + row.map { String(format: "%6d", $0) }.joined())
    }
    lines.append("")
    lines.append("parameters sha256 \(sha256)")
    return lines.joined(separator: "\n")
  }
}

extension Report {
  /// The per-phase split of training time, one line per phase.
  static func profile(_ profile: PhaseProfile) -> String {
    var lines = ["", "where training time went (seconds per worker, averaged over workers)"]
    for (name, seconds) in profile.phases {
      lines.append(
        name.padding(toLength: 10, withPad: " ", startingAt: 0)
          + String(format: "%8.3f s  %5.1f%%", seconds, 100 * seconds / max(profile.total, 1e-12)))
    }
    return lines.joined(separator: "\n")
  }
}

/// Renders training events on stderr: a redrawn progress bar on a terminal, else one
/// plain line per epoch. Redraws at most ten times a second.
final class ProgressReporter {
  private let enabled: Bool
  private let interactive: Bool
  private var lastDraw = ContinuousClock.now
  private let clock = ContinuousClock()

  init(enabled: Bool, interactive: Bool) {
    self.enabled = enabled
    self.interactive = interactive
  }

  func handle(_ event: TrainingEvent) {
    guard enabled else { return }
    switch event {
    case .step(let p):
      guard interactive else { return }
      let now = clock.now
      guard p.step == p.stepsPerEpoch || now - lastDraw >= .milliseconds(100) else { return }
      lastDraw = now
      let fraction = Double(p.step) / Double(p.stepsPerEpoch)
      let width = 30
      let filled = Int(fraction * Double(width))
      let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
      let rate = Double(p.images) / max(p.seconds, 1e-9)
      let eta = p.seconds / max(fraction, 1e-9) - p.seconds
      let text =
        "epoch \(p.epoch)/\(p.epochs) \(bar) "
        + String(format: "%d/%d  %.0f img/s  loss %.4f", p.step, p.stepsPerEpoch, rate, p.loss)
        + "  ETA \(Self.clockTime(eta))"
      Terminal.progress("\r" + text + "\u{1B}[K")
    case .epochFinished(let r):
      var line = String(
        format: "epoch %d  loss %.4f  acc %.2f%%", r.epoch, r.trainLoss, r.trainAccuracy * 100)
      if let test = r.test {
        line += String(format: "  test loss %.4f  test acc %.2f%%", test.loss, test.accuracy * 100)
      }
      line += String(format: "  %.0f img/s  %.1f s", r.imagesPerSecond, r.trainSeconds)
      Terminal.error((interactive ? "\r\u{1B}[K" : "") + line)
    }
  }

  /// Ends a half-drawn progress bar so that the next line starts clean.
  func finishLine() {
    if enabled && interactive { Terminal.progress("\r\u{1B}[K") }
  }

  /// `seconds` as m:ss.
  static func clockTime(_ seconds: Double) -> String {
    let whole = max(Int(seconds.rounded()), 0)
    return String(format: "%d:%02d", whole / 60, whole % 60)
  }
}
