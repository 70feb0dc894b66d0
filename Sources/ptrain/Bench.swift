import ArgumentParser
import Foundation
import PTrain

/// `ptrain bench`: how training throughput scales with threads.
struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench",
    abstract: "Measure how training throughput scales with the number of threads.",
    discussion: """
      For each thread count, trains --steps steps on the bundled MNIST after 10 warm-up steps \
      and reports img/s, speed-up and parallel efficiency against the first count, the GFLOP/s \
      the kernels execute against a measured FMA peak on the same workers, and where a step's \
      time goes.
      """)

  @Option(
    help: """
      Comma-separated thread counts. (default: 1, 2, 4, … up to the physical cores, and the core count, \
      but no more than a batch's shards of 4 images)
      """)
  var threads: String?

  @Option(help: "Images per step.")
  var batchSize: Int = 32

  @Option(help: "Timed steps per thread count.")
  var steps: Int = 300

  @Flag(help: "Print one JSON object instead of the table.")
  var json = false

  @Option(help: ArgumentHelp("Write a chart of img/s and efficiency against threads to PATH.", valueName: "PATH"))
  var svg: String?

  struct Row: Encodable {
    let threads: Int
    let imagesPerSecond: Double
    let speedup: Double
    let efficiency: Double
    /// GFLOP/s the kernels execute (Winograd conv2).
    let gflops: Double
    /// GFLOP/s counted as direct convolution, 14.26 MFLOP per image: comparable across engines.
    let directConvolutionGflops: Double
    let fmaPeakGflops: Double
    let percentOfPeak: Double
    /// Milliseconds per step in each phase, averaged over workers.
    let stepMilliseconds: [String: Double]
  }

  func run() throws {
    try CPUSupport.requireVectorUnits()
    let topology = try Topology()
    guard steps >= 1 else { throw ValidationError("--steps must be at least 1, got \(steps)") }
    let shape = TrainingOptions(threads: 1, batchSize: batchSize)
    try usage { try shape.validate() }
    let counts = try threadCounts(cores: topology.physicalCores, shards: shape.shardsPerBatch)
    if let svg { try checkOutputPath(svg, flag: "--svg") }
    if let most = counts.max(), let advice = idleWorkerAdvice(threads: most, options: shape) {
      Terminal.warn(advice)
    }
    let mnist = try Dataset.bundledMNIST()
    let warmUp = mnist.train.prefix(min(10 * batchSize, mnist.train.count))
    let timed = mnist.train.prefix(min(steps * batchSize, mnist.train.count))
    let timedSteps = (timed.count + batchSize - 1) / batchSize
    var rows: [Row] = []
    for count in counts {
      if !json { Terminal.error("bench: \(count) thread(s)…") }
      let trainer = try Trainer(
        options: TrainingOptions(threads: count, epochs: 2, batchSize: batchSize), topology: topology)
      try trainer.train(warmUp, untilEpoch: 1)
      let before = trainer.profile
      let summary = try trainer.train(timed, untilEpoch: 2)
      let after = trainer.profile
      let peak = FMAPeak.measure(pool: trainer.pool)
      let gflops = summary.imagesPerSecond * Double(trainer.spec.executedTrainingFlopsPerImage) / 1e9
      // Speed-up and efficiency are relative to the first thread count of the sweep.
      let speedup = summary.imagesPerSecond / (rows.first?.imagesPerSecond ?? summary.imagesPerSecond)
      let efficiency = speedup * Double(rows.first?.threads ?? count) / Double(count)
      var split: [String: Double] = [:]
      for ((name, end), (_, start)) in zip(after.phases, before.phases) {
        split[name] = (end - start) / Double(timedSteps) * 1000
      }
      rows.append(
        Row(
          threads: count, imagesPerSecond: summary.imagesPerSecond, speedup: speedup,
          efficiency: efficiency, gflops: gflops,
          directConvolutionGflops: summary.imagesPerSecond * Double(trainer.spec.trainingFlopsPerImage) / 1e9,
          fmaPeakGflops: peak, percentOfPeak: peak > 0 ? 100 * gflops / peak : 0, stepMilliseconds: split))
    }
    if let svg { try writeFileAtomically(Array(ScalingChart.svg(rows: rows, batchSize: batchSize).utf8), to: svg) }
    if json {
      struct Output: Encodable {
        let batchSize: Int
        let steps: Int
        let rows: [Row]
      }
      try printJSON(Output(batchSize: batchSize, steps: timedSteps, rows: rows))
      return
    }
    try Terminal.output(
      "batch \(batchSize), \(timedSteps) timed steps; step split in ms per step, averaged over workers")
    try Terminal.output(
      String(
        format: "GFLOP/s: executed by the kernels, %.2f MFLOP per image (direct convolution would need %.2f)",
        Double(ModelSpec().executedTrainingFlopsPerImage) / 1e6, Double(ModelSpec().trainingFlopsPerImage) / 1e6))
    try Terminal.output(
      "a batch of \(batchSize) makes \(shape.shardsPerBatch) shard(s) of \(shape.shardSize) images; more threads than that would idle"
    )
    try Terminal.output(
      "threads    img/s  speed-up  efficiency  GFLOP/s  % FMA peak  compute  reduce  optimizer    data  barrier")
    for row in rows {
      let ms = { (name: String) in String(format: "%7.3f", row.stepMilliseconds[name] ?? 0) }
      try Terminal.output(
        String(
          format: "%7d  %7.0f  %7.2f×  %9.0f%%  %7.1f  %9.0f%%", row.threads, row.imagesPerSecond, row.speedup,
          row.efficiency * 100, row.gflops, row.percentOfPeak)
          + "  \(ms("compute"))  \(ms("reduce"))    \(ms("optimizer")) \(ms("data"))  \(ms("barrier"))")
    }
    try Terminal.output(
      String(
        format: "FMA peak measured on the same workers: %.1f GFLOP/s at %d thread(s)", rows.last!.fmaPeakGflops,
        rows.last!.threads))
  }

  /// The thread counts to sweep: parsed from --threads, or 1, 2, 4, … up to the
  /// physical cores and the core count itself, none above a batch's `shards` (more
  /// workers than shards would only idle).
  func threadCounts(cores: Int, shards: Int) throws -> [Int] {
    guard let threads else {
      let most = min(cores, shards)
      var counts: [Int] = []
      var count = 1
      while count < most {
        counts.append(count)
        count *= 2
      }
      return counts + [most]
    }
    let counts = threads.split(separator: ",", omittingEmptySubsequences: false).map {
      Int($0.trimmingCharacters(in: .whitespaces))
    }
    guard counts.allSatisfy({ (1...TrainingOptions.maximumThreads).contains($0 ?? 0) }) else {
      throw ValidationError(
        "--threads takes integers from 1 to \(TrainingOptions.maximumThreads) separated by commas, like 1,2,8; got '\(threads)'"
      )
    }
    return counts.map { $0! }
  }
}

/// An SVG line chart of a thread sweep: img/s on the left axis, efficiency on the right.
enum ScalingChart {
  static func svg(rows: [Bench.Row], batchSize: Int) -> String {
    let width = 640.0
    let height = 400.0
    let left = 70.0
    let right = 70.0
    let top = 40.0
    let bottom = 50.0
    let plotWidth = width - left - right
    let plotHeight = height - top - bottom
    let maxThreads = Double(rows.map(\.threads).max() ?? 1)
    let maxRate = (rows.map(\.imagesPerSecond).max() ?? 1) * 1.15
    func x(_ threads: Int) -> Double {
      left + (maxThreads > 1 ? (Double(threads) - 1) / (maxThreads - 1) : 0.5) * plotWidth
    }
    func yRate(_ rate: Double) -> Double { top + plotHeight * (1 - rate / maxRate) }
    func yEfficiency(_ e: Double) -> Double { top + plotHeight * (1 - min(e, 1.15) / 1.15) }
    func line(_ points: [(Double, Double)], color: String, dash: String = "") -> String {
      let path = points.map { String(format: "%.1f,%.1f", $0.0, $0.1) }.joined(separator: " ")
      let dots = points.map {
        String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" ", $0.0, $0.1) + "fill=\"\(color)\"/>"
      }
      return "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2.5\" \(dash) points=\"\(path)\"/>"
        + dots.joined()
    }
    var parts: [String] = []
    parts.append(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">"
    )
    parts.append("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>")
    parts.append(
      "<text x=\"\(Int(width / 2))\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">ptrain scaling, batch \(batchSize)</text>"
    )
    for i in 0...4 {
      let fraction = Double(i) / 4
      let y = top + plotHeight * (1 - fraction)
      parts.append(
        String(
          format: "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>", left, width - right, y, y))
      parts.append(
        String(
          format: "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\" fill=\"#1f77b4\">%.0f</text>", left - 6, y + 4,
          maxRate * fraction))
      parts.append(
        String(
          format: "<text x=\"%.0f\" y=\"%.1f\" fill=\"#d62728\">%.0f%%</text>", width - right + 6, y + 4, 115 * fraction
        ))
    }
    for row in rows {
      parts.append(
        String(
          format: "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%d</text>", x(row.threads), height - bottom + 18,
          row.threads))
    }
    parts.append(line(rows.map { (x($0.threads), yRate($0.imagesPerSecond)) }, color: "#1f77b4"))
    parts.append(
      line(rows.map { (x($0.threads), yEfficiency($0.efficiency)) }, color: "#d62728", dash: "stroke-dasharray=\"6 4\"")
    )
    parts.append("<text x=\"\(Int(width / 2))\" y=\"\(Int(height - 12))\" text-anchor=\"middle\">threads</text>")
    parts.append(
      "<text x=\"16\" y=\"\(Int(top + plotHeight / 2))\" transform=\"rotate(-90 16 \(Int(top + plotHeight / 2)))\" text-anchor=\"middle\" fill=\"#1f77b4\">images / s (solid)</text>"
    )
    parts.append(
      "<text x=\"\(Int(width - 14))\" y=\"\(Int(top + plotHeight / 2))\" transform=\"rotate(90 \(Int(width - 14)) \(Int(top + plotHeight / 2)))\" text-anchor=\"middle\" fill=\"#d62728\">parallel efficiency (dashed)</text>"
    )
    parts.append("</svg>")
    return parts.joined(separator: "\n") + "\n"
  }
}
