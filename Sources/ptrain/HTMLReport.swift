import Foundation
import PTrain

/// One self-contained HTML page about a run, with inline SVG and no scripts: loss and
/// accuracy curves per epoch, the confusion matrix as a heat map with counts, per-class
/// precision, recall and F1 bars, throughput per epoch, and the settings with the
/// parameters' SHA-256. It opens offline in any browser.
enum HTMLReport {
  /// The page for `run`. Cost: O(epochs + classes²).
  static func render(_ run: RunSummary) -> String {
    let names = (0..<run.confusionMatrix.count).map { index in
      run.classNames.flatMap { index < $0.count ? $0[index] : nil } ?? String(index)
    }
    let epochs = run.history.map { Double($0.epoch) }
    // Each epoch was evaluated on the test set, or on a validation split (the test set then once, at the end).
    let validating = run.validation != nil
    let evaluated = validating ? "validation" : "test"
    let losses = [
      Series(name: "train", color: "#1f77b4", values: run.history.map(\.trainLoss)),
      Series(
        name: evaluated, color: "#d62728",
        values: run.history.map { (validating ? $0.validationLoss : $0.testLoss) ?? .nan }),
    ]
    let accuracies = [
      Series(name: "train", color: "#1f77b4", values: run.history.map { 100 * $0.trainAccuracy }),
      Series(
        name: evaluated, color: "#d62728",
        values: run.history.map { 100 * ((validating ? $0.validationAccuracy : $0.testAccuracy) ?? .nan) }),
    ]
    let throughput = [Series(name: "img/s", color: "#2ca02c", values: run.history.map(\.imagesPerSecond))]
    let rates = [
      Series(name: "rate", color: "#9467bd", values: run.history.map { $0.learningRate.map(Double.init) ?? .nan })
    ]
    let optimizer =
      [
        run.optimizer, run.lrSchedule.map { "\($0) schedule" },
        run.warmupSteps.flatMap { $0 > 0 ? "\($0) warm-up steps" : nil },
        run.labelSmoothing.flatMap { $0 > 0 ? "label smoothing \($0)" : nil },
      ].compactMap { $0 }.joined(separator: ", ")
    let settings: [(String, String)] = [
      ("model", run.model ?? "?"), ("data", "\(run.dataset), \(run.trainImages) training images"),
      ("options", "batch \(run.batchSize), learning rate \(run.learningRate), seed \(run.seed), \(run.epochs) epochs"),
      ("optimizer", optimizer.isEmpty ? "adam" : optimizer),
      ("threads", "\(run.threads)\(run.pinned ? ", pinned" : "")"),
      (
        run.evaluatedOn ?? "test",
        String(format: "accuracy %.2f%%, loss ", 100 * run.testAccuracy)
          + (run.testLoss.finite.map { String(format: "%.4f", $0) } ?? "not finite (outputs overflowed)")
      ),
      ("parameters_sha256", run.parametersSHA256),
    ]
    // A checkpoint has no timings: its report leaves them out rather than show zeros.
    let timed = run.imagesPerSecond > 0
    let speed = timed ? [("speed", String(format: "%.0f img/s, %.1f s", run.imagesPerSecond, run.seconds))] : []
    let hasThroughput = throughput[0].values.contains { $0.isFinite && $0 > 0 }
    let hasRates = rates[0].values.contains(where: \.isFinite)
    return """
      <!DOCTYPE html>
      <html lang="en" xmlns="http://www.w3.org/1999/xhtml"><head><meta charset="utf-8"/><title>ptrain report: \(escape(run.model ?? run.dataset))</title>
      <style>
      body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
      h1{font-size:20px}h2{font-size:16px;margin-top:28px}
      table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left;vertical-align:top}
      code{font-size:12px;overflow-wrap:break-word}.charts{display:flex;flex-wrap:wrap;gap:16px}
      </style></head><body>
      <h1>ptrain run on \(escape(run.dataset))</h1>
      <section id="settings"><h2>Settings</h2><table>
      \((settings + speed).map { "<tr><th>\(escape($0.0))</th><td><code>\(escape($0.1))</code></td></tr>" }.joined(separator: "\n"))
      </table></section>
      <section id="curves"><h2>Loss and accuracy per epoch</h2><div class="charts">
      \(lineChart(title: "loss", x: epochs, series: losses, axis: .fromZero))
      \(lineChart(title: "accuracy (%)", x: epochs, series: accuracies, axis: .cutBelowData))
      </div></section>
      \(hasThroughput || hasRates ? "<section id=\"throughput\"><h2>\(hasThroughput ? "Throughput and learning rate" : "Learning rate") per epoch</h2><div class=\"charts\">" : "")
      \(hasThroughput ? lineChart(title: "images per second", x: epochs, series: throughput, axis: .fromZero) : "")
      \(hasRates ? lineChart(title: "learning rate (epoch's last step)", x: epochs, series: rates, axis: .fromZero) : "")
      \(hasThroughput || hasRates ? "</div></section>" : "")
      <section id="confusion"><h2>Confusion matrix (rows: true class, columns: predicted)</h2>
      \(heatMap(run.confusionMatrix, names: names))
      </section>
      <section id="per-class"><h2>Per-class precision, recall and F1</h2>
      \(classBars(run.perClass, names: names))
      </section>
      </body></html>

      """
  }

  struct Series {
    let name: String
    let color: String
    let values: [Double]
  }

  /// Where a chart's value axis starts.
  enum Axis {
    /// At zero (or below, for negative values), so that a small change looks small.
    case fromZero
    /// Just below the lowest value, with a break drawn on the axis to say it is cut.
    case cutBelowData
  }

  /// A line chart of `series` against `x`, with axes, round ticks and a legend; NaN
  /// points are left out.
  static func lineChart(title: String, x: [Double], series: [Series], axis: Axis) -> String {
    let (width, height, left, right, top, bottom) = (480.0, 300.0, 60.0, 90.0, 28.0, 36.0)
    let finite = series.flatMap(\.values).filter(\.isFinite)
    var low = finite.min() ?? 0
    var high = finite.max() ?? 1
    if axis == .fromZero { low = min(low, 0) }
    if high - low < 1e-12 {
      low -= 0.5
      high += 0.5
    }
    // Round ticks: the axis runs from a multiple of the step below the data to one above.
    let step = ScalingChart.tickStep(maximum: high - low, count: 4)
    low = (low / step).rounded(.down) * step
    high = max((high / step).rounded(.up) * step, low + step)
    let isCut = low > 0
    let (xLow, xHigh) = (x.first ?? 0, max(x.last ?? 1, (x.first ?? 0) + 1))
    func px(_ value: Double) -> Double { left + (value - xLow) / (xHigh - xLow) * (width - left - right) }
    func py(_ value: Double) -> Double { top + (high - value) / (high - low) * (height - top - bottom) }
    var parts = [
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\">",
      "<text x=\"\(left)\" y=\"18\" font-size=\"13\">\(escape(title))</text>",
      "<line x1=\"\(left)\" y1=\"\(height - bottom)\" x2=\"\(width - right)\" y2=\"\(height - bottom)\" stroke=\"#444\"/>",
      "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(height - bottom)\" stroke=\"#444\"/>",
    ]
    for value in stride(from: low, through: high + step / 2, by: step) {
      parts.append(
        "<text x=\"\(left - 6)\" y=\(quote(py(value) + 4)) font-size=\"11\" text-anchor=\"end\">\(format(value))</text>"
      )
    }
    for value in x {
      parts.append(
        "<text x=\(quote(px(value))) y=\"\(height - bottom + 16)\" font-size=\"11\" text-anchor=\"middle\">\(Int(value))</text>"
      )
    }
    parts.append(
      "<text x=\"\((left + width - right) / 2)\" y=\"\(height - 4)\" font-size=\"11\" text-anchor=\"middle\">epoch</text>"
    )
    if isCut {
      // A break in the value axis just above its foot: it does not start at zero.
      let y = height - bottom - 8
      parts.append(
        "<rect x=\"\(left - 5)\" y=\(quote(y - 4)) width=\"10\" height=\"6\" fill=\"white\"/>"
          + "<path d=\"M\(left - 6) \(format(y)) l12 -5 M\(left - 6) \(format(y + 4)) l12 -5\" stroke=\"#444\"/>"
          + "<text x=\"\(width - right - 4)\" y=\(quote(y)) font-size=\"10\" fill=\"#666\" text-anchor=\"end\">axis cut: starts at \(format(low))</text>"
      )
    }
    for (index, line) in series.enumerated() {
      let points = zip(x, line.values).filter { $0.1.isFinite }.map { "\(format(px($0.0))),\(format(py($0.1)))" }
      if !points.isEmpty {
        parts.append(
          "<polyline fill=\"none\" stroke=\"\(line.color)\" stroke-width=\"2\" points=\"\(points.joined(separator: " "))\"/>"
        )
        for point in points {
          let xy = point.split(separator: ",")
          parts.append("<circle cx=\"\(xy[0])\" cy=\"\(xy[1])\" r=\"3\" fill=\"\(line.color)\"/>")
        }
      }
      let y = top + 14 + Double(index) * 18
      parts.append(
        "<rect x=\"\(width - right + 10)\" y=\(quote(y - 9)) width=\"12\" height=\"3\" fill=\"\(line.color)\"/>"
          + "<text x=\"\(width - right + 26)\" y=\(quote(y - 4)) font-size=\"11\">\(escape(line.name))</text>")
    }
    parts.append("</svg>")
    return parts.joined(separator: "\n")
  }

  /// The confusion matrix as cells shaded by each row's share, with the counts in them.
  static func heatMap(_ matrix: [[Int]], names: [String]) -> String {
    let count = matrix.count
    guard count <= maximumHeatMapClasses else { return mostConfused(matrix, names: names) }
    let cell = count > 20 ? 24.0 : 40.0
    let labels = names.map(shortened)
    // Room for the longest label: beside the rows, and above the columns (at 60°).
    let labelWidth = characterWidth * Double(labels.map(\.count).max() ?? 2) + 12
    let size = labelWidth + cell * Double(count)
    // The last column's label leans right by half its length.
    let width = size + 0.5 * characterWidth * Double(labels.last?.count ?? 0) + 10
    var parts = [
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(size + 10))\" role=\"img\">"
    ]
    for (row, counts) in matrix.enumerated() {
      let total = max(counts.reduce(0, +), 1)
      let y = labelWidth + Double(row) * cell
      parts.append(
        "<text x=\"\(labelWidth - 6)\" y=\(quote(y + cell / 2 + 4)) font-size=\"11\" text-anchor=\"end\"><title>\(escape(names[row]))</title>\(escape(labels[row]))</text>"
      )
      for (column, value) in counts.enumerated() {
        let x = labelWidth + Double(column) * cell
        let share = Double(value) / Double(total)
        let shade = Int(255 - 200 * share)
        let color = row == column ? "rgb(\(shade),\(Int(255 - 120 * share)),\(shade))" : "rgb(255,\(shade),\(shade))"
        parts.append(
          "<rect x=\(quote(x)) y=\(quote(y)) width=\(quote(cell - 1)) height=\(quote(cell - 1)) fill=\"\(color)\"/>"
            + "<text x=\(quote(x + cell / 2)) y=\(quote(y + cell / 2 + 4)) font-size=\"10\" text-anchor=\"middle\">\(value)</text>"
        )
      }
    }
    for column in 0..<count {
      let x = labelWidth + Double(column) * cell + cell / 2
      parts.append(
        "<text x=\(quote(x)) y=\"\(labelWidth - 6)\" font-size=\"11\" text-anchor=\"start\" transform=\"rotate(-60 \(format(x)) \(format(labelWidth - 6)))\"><title>\(escape(names[column]))</title>\(escape(labels[column]))</text>"
      )
    }
    parts.append("</svg>")
    return parts.joined(separator: "\n")
  }

  /// The most classes whose confusion matrix is drawn cell by cell; above it the page
  /// would grow with the square of the classes (a million cells at 1,024), so it lists
  /// the most frequent confusions instead.
  static let maximumHeatMapClasses = 32
  /// The confusions listed in place of a heat map.
  static let listedConfusions = 25

  /// The `listedConfusions` most frequent off-diagonal cells of `matrix` as a table, most
  /// frequent first (ties in row, then column order). Cost: O(classes²) time, O(classes)
  /// bytes of page.
  static func mostConfused(_ matrix: [[Int]], names: [String]) -> String {
    var cells: [(count: Int, row: Int, column: Int)] = []
    for (row, counts) in matrix.enumerated() {
      for (column, value) in counts.enumerated() where row != column && value > 0 {
        cells.append((value, row, column))
      }
    }
    let top = cells.sorted { ($0.count, -$0.row, -$0.column) > ($1.count, -$1.row, -$1.column) }
      .prefix(listedConfusions)
    let rows = top.map {
      "<tr><td>\(escape(names[$0.row]))</td><td>\(escape(names[$0.column]))</td><td>\($0.count)</td></tr>"
    }
    return """
      <p>\(matrix.count) classes are too many for a readable heat map; these are the \(top.count) most frequent \
      confusions (the whole matrix is in the <code>--json</code> summary's <code>confusion_matrix</code>).</p>
      <table><tr><th>true class</th><th>predicted</th><th>images</th></tr>
      \(rows.joined(separator: "\n"))
      </table>
      """
  }

  /// About the width of one character of an 11-pixel label, for sizing label room.
  static let characterWidth = 6.5
  /// The longest label drawn whole; longer class names end in "…" (the full name is
  /// the label's tooltip).
  static let longestLabel = 32

  /// `name` cut to `longestLabel` characters.
  static func shortened(_ name: String) -> String {
    name.count <= longestLabel ? name : String(name.prefix(longestLabel - 1)) + "…"
  }

  /// Three bars per class (precision, recall, F1) from 0 to 1, with a legend and the
  /// class names slanted below.
  static func classBars(_ classes: [Evaluation.ClassMetrics], names: [String]) -> String {
    let (group, bar, left, top, chartHeight) = (44.0, 12.0, 40.0, 24.0, 180.0)
    let labels = names.map(shortened)
    // Labels at 45° need about 0.71 of their length below the bars, and to the right.
    let labelRoom = 0.71 * characterWidth * Double(labels.map(\.count).max() ?? 2) + 20
    let width = left + group * Double(classes.count) + max(20, labelRoom - group)
    let colors = ["#1f77b4", "#ff7f0e", "#2ca02c"]
    var parts = [
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(top + chartHeight + labelRoom + 10))\" role=\"img\">"
    ]
    for (index, name) in ["precision", "recall", "F1"].enumerated() {
      parts.append(
        "<rect x=\"\(left + Double(index) * 90)\" y=\"4\" width=\"12\" height=\"12\" fill=\"\(colors[index])\"/>"
          + "<text x=\"\(left + Double(index) * 90 + 16)\" y=\"14\" font-size=\"11\">\(name)</text>")
    }
    for tick in [0.0, 0.5, 1.0] {
      let y = top + chartHeight * (1 - tick)
      parts.append(
        "<line x1=\"\(left)\" y1=\(quote(y)) x2=\(quote(width - 10)) y2=\(quote(y)) stroke=\"#ddd\"/>"
          + "<text x=\"\(left - 6)\" y=\(quote(y + 4)) font-size=\"11\" text-anchor=\"end\">\(format(tick))</text>")
    }
    for (index, metrics) in classes.enumerated() {
      let x = left + group * Double(index) + 4
      for (k, value) in [metrics.precision, metrics.recall, metrics.f1].enumerated() {
        let height = chartHeight * min(max(value, 0), 1)
        parts.append(
          "<rect x=\(quote(x + Double(k) * bar)) y=\(quote(top + chartHeight - height)) width=\(quote(bar - 1)) height=\(quote(height)) fill=\"\(colors[k])\"><title>\(escape(names[index])) \(["precision", "recall", "F1"][k]) \(format(value))</title></rect>"
        )
      }
      let (labelX, labelY) = (x + 1.5 * bar, top + chartHeight + 12)
      parts.append(
        "<text x=\(quote(labelX)) y=\(quote(labelY)) font-size=\"11\" text-anchor=\"start\" transform=\"rotate(45 \(format(labelX)) \(format(labelY)))\"><title>\(escape(names[index]))</title>\(escape(labels[index]))</text>"
      )
    }
    parts.append("</svg>")
    return parts.joined(separator: "\n")
  }

  /// `text` with HTML's special characters escaped.
  /// `text` for XHTML: markup characters as entities, and control characters (which
  /// XML 1.0 forbids, and which a file name or checkpoint may carry) as visible escapes.
  static func escape(_ text: String) -> String {
    Terminal.visible(text).replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
      .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
  }

  private static func format(_ value: Double) -> String {
    abs(value) >= 1000 ? String(format: "%.0f", value) : String(format: "%.3g", value)
  }

  private static func quote(_ value: Double) -> String { "\"\(format(value))\"" }
}
