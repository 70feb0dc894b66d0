import Foundation

/// An SVG line chart of a thread sweep: img/s on the left axis with the ideal linear
/// scaling from the first point, parallel efficiency on the right, and a subtitle that
/// says what was measured where (CPU, build level, batch, steps).
enum ScalingChart {
  /// A round step for about `count` ticks up to `maximum` (any positive size, 1e-4 as
  /// well as 1e4): 1, 2, 2.5 or 5 × 10^k.
  static func tickStep(maximum: Double, count: Int = 5) -> Double {
    let raw = (maximum > 0 ? maximum : 1) / Double(count)
    let power = pow(10, floor(log10(raw)))
    return ([1, 2, 2.5, 5, 10].map { $0 * power }.first { $0 >= raw }) ?? 10 * power
  }

  /// `value` as a short tick label: 0, 500, 5k, 12.5k, 1.2M.
  static func tickLabel(_ value: Double) -> String {
    func trimmed(_ x: Double) -> String {
      x == x.rounded() ? String(format: "%.0f", x) : String(format: "%.1f", x)
    }
    if value >= 1e6 { return trimmed(value / 1e6) + "M" }
    if value >= 1e3 { return trimmed(value / 1e3) + "k" }
    return trimmed(value)
  }

  /// Parallel efficiency above this is reported as above linear (below it, rounding).
  static let superlinearThreshold = 1.005

  /// Why a row's efficiency is above 100%, when one is: nil otherwise.
  static func superlinearNote(_ rows: [Bench.Row]) -> String? {
    guard let row = rows.max(by: { $0.efficiency < $1.efficiency }), row.efficiency > superlinearThreshold else {
      return nil
    }
    return String(
      format:
        "%.0f%% efficiency at %d threads is above linear scaling: each worker holds a smaller share of the batch, so more of it stays in its cache, or the %d-thread run met a busier machine (noise); run bench again to tell the two apart",
      100 * row.efficiency, row.threads, rows.first?.threads ?? 1)
  }

  static func svg(rows: [Bench.Row], model: String, batchSize: Int, steps: Int, cpu: String, level: String) -> String {
    let (width, height) = (680.0, 420.0)
    let (left, right, top, bottom) = (70.0, 70.0, 62.0, 50.0)
    let plotWidth = width - left - right
    let plotHeight = height - top - bottom
    let first = rows.first
    let maxThreads = Double(rows.map(\.threads).max() ?? 1)
    let ideal = rows.map { row in (first?.imagesPerSecond ?? 0) * Double(row.threads) / Double(first?.threads ?? 1) }
    // The axis holds the ideal line too, so that it never leaves the frame.
    let highest = max(rows.map(\.imagesPerSecond).max() ?? 1, ideal.max() ?? 1, 1)
    let rateStep = tickStep(maximum: highest * 1.05)
    let rateTop = (highest * 1.05 / rateStep).rounded(.up) * rateStep
    // Efficiency a few percent over 100% is timing noise; the axis ends at 100% unless it is more.
    let efficiencyTop = max(1.0, ((rows.map(\.efficiency).max() ?? 1) / 0.25 - 0.2).rounded(.up) * 0.25)
    func x(_ threads: Int) -> Double {
      left + (maxThreads > 1 ? (Double(threads) - 1) / (maxThreads - 1) : 0.5) * plotWidth
    }
    func yRate(_ rate: Double) -> Double { top + plotHeight * (1 - rate / rateTop) }
    func yEfficiency(_ e: Double) -> Double { top + plotHeight * (1 - min(e, efficiencyTop) / efficiencyTop) }
    func polyline(_ points: [(Double, Double)], color: String, style: String) -> String {
      let path = points.map { String(format: "%.1f,%.1f", $0.0, $0.1) }.joined(separator: " ")
      return "<polyline fill=\"none\" stroke=\"\(color)\" \(style) points=\"\(path)\"/>"
    }
    var parts: [String] = [
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">",
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>",
      "<clipPath id=\"plot\"><rect x=\"\(left)\" y=\"\(top)\" width=\"\(plotWidth)\" height=\"\(plotHeight)\"/></clipPath>",
      "<text x=\"\(Int(width / 2))\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">ptrain: training throughput against threads</text>",
      "<text x=\"\(Int(width / 2))\" y=\"40\" text-anchor=\"middle\" fill=\"#555\">"
        + xmlEscaped("\(model) · \(cpu) · \(level) build · batch \(batchSize) · \(steps) timed steps") + "</text>",
    ]
    var tick = 0.0
    while tick <= rateTop + rateStep / 2 {
      let y = yRate(tick)
      parts.append(
        String(
          format: "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>", left, width - right, y,
          y))
      parts.append(
        String(format: "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\" fill=\"#1f77b4\">", left - 6, y + 4)
          + tickLabel(tick) + "</text>")
      tick += rateStep
    }
    for percent in stride(from: 0.0, through: efficiencyTop + 1e-9, by: 0.25) {
      parts.append(
        String(
          format: "<text x=\"%.0f\" y=\"%.1f\" fill=\"#d62728\">%.0f%%</text>", width - right + 6,
          yEfficiency(percent) + 4, percent * 100))
    }
    for row in rows {
      parts.append(
        String(
          format: "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%d</text>", x(row.threads), height - bottom + 18,
          row.threads))
    }
    parts.append(
      String(
        format: "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#999\"/>", left, top,
        plotWidth, plotHeight))
    // Ideal scaling first, so that the measured lines and markers draw over it.
    parts.append(
      polyline(
        zip(rows, ideal).map { (x($0.threads), yRate($1)) }, color: "#888",
        style: "clip-path=\"url(#plot)\" stroke-width=\"1.5\" stroke-dasharray=\"2 4\""))
    parts.append(
      polyline(
        rows.map { (x($0.threads), yEfficiency($0.efficiency)) }, color: "#d62728",
        style: "stroke-width=\"2\" stroke-dasharray=\"6 4\""))
    parts.append(
      polyline(rows.map { (x($0.threads), yRate($0.imagesPerSecond)) }, color: "#1f77b4", style: "stroke-width=\"2.5\"")
    )
    // Markers of different shapes and sizes, outlined in white, so that coinciding points stay visible.
    for row in rows {
      let (cx, ce, cr) = (x(row.threads), yEfficiency(row.efficiency), yRate(row.imagesPerSecond))
      parts.append(
        String(
          format: "<rect x=\"%.1f\" y=\"%.1f\" width=\"9\" height=\"9\" fill=\"#d62728\" stroke=\"white\"/>", cx - 4.5,
          ce - 4.5))
      parts.append(
        String(
          format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"#1f77b4\" stroke=\"white\" stroke-width=\"1.5\"/>",
          cx, cr))
    }
    let middle = Int(top + plotHeight / 2)
    parts += [
      "<text x=\"\(Int(width / 2))\" y=\"\(Int(height - 12))\" text-anchor=\"middle\">threads</text>",
      "<text x=\"18\" y=\"\(middle)\" transform=\"rotate(-90 18 \(middle))\" text-anchor=\"middle\" fill=\"#1f77b4\">images / s (solid, ●); ideal linear scaling (dotted)</text>",
      "<text x=\"\(Int(width - 14))\" y=\"\(middle)\" transform=\"rotate(90 \(Int(width - 14)) \(middle))\" text-anchor=\"middle\" fill=\"#d62728\">parallel efficiency (dashed, ■)</text>",
    ]
    if let row = rows.max(by: { $0.efficiency < $1.efficiency }), row.efficiency > superlinearThreshold {
      parts.append(
        "<text x=\"\(Int(width / 2))\" y=\"55\" text-anchor=\"middle\" font-size=\"11\" fill=\"#d62728\">"
          + String(
            format: "%.0f%% at %d threads: above linear (smaller shards fit the caches better, or a noisy run)",
            100 * row.efficiency, row.threads) + "</text>")
    }
    parts.append("</svg>")
    return parts.joined(separator: "\n") + "\n"
  }

  /// `text` with XML's special characters escaped.
  static func xmlEscaped(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
      .replacingOccurrences(of: ">", with: "&gt;")
  }
}
