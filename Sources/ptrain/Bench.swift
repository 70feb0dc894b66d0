import ArgumentParser
import Foundation
import PTrain

/// `ptrain bench`: how training throughput scales with threads.
struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench",
    abstract: "Measure how training throughput scales with the number of threads.",
    discussion: """
      For each thread count, trains --model (mnist-cnn by default) for --steps steps after 10 \
      warm-up steps, on the bundled MNIST when the model takes 28x28x1 images and on random \
      images of its input shape otherwise, and reports img/s, speed-up and parallel \
      efficiency against the first count, the GFLOP/s the kernels execute against a measured \
      FMA peak on the same workers, and where a step's time goes.
      """)

  @OptionGroup var model: ModelOptions
  @OptionGroup var placement: PlacementOptions

  @Option(
    help: """
      Comma-separated thread counts, per process. (default: 1, 2, 4, … up to the physical cores the \
      process may use (split among the MPI ranks on a node), and that count, but no more than a \
      batch's shards of 4 images)
      """)
  var threads: String?

  @Option(parsing: .unconditional, help: "Images per step.")
  var batchSize: Int = 32

  @Option(parsing: .unconditional, help: "Timed steps per thread count.")
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
    /// GFLOP/s the kernels execute (Winograd counts its GEMMs).
    let gflops: Double
    /// GFLOP/s counted as direct convolution would do it: comparable across engines.
    let directConvolutionGflops: Double
    let fmaPeakGflops: Double
    /// `gflops` as a share of `fmaPeakGflops`: how busy the kernels keep the FMA units.
    let percentOfPeak: Double
    /// `directConvolutionGflops` as a share of `fmaPeakGflops`: the share of the peak a
    /// direct-convolution engine would need for this speed; it grows whenever the step
    /// gets faster, fewer executed FLOP (Winograd) or not.
    let directConvolutionPercentOfPeak: Double
    /// Milliseconds per step in each phase, averaged over workers.
    let stepMilliseconds: [String: Double]
  }

  func run() throws {
    try CPUSupport.requireVectorUnits()
    let topology = try placement.topology()
    guard steps >= 1 else { throw ValidationError("--steps must be at least 1, got \(steps)") }
    let shape = TrainingOptions(threads: 1, batchSize: batchSize)
    try usage { try shape.validate() }
    let counts = try threadCounts(cores: coresPerProcess(topology), shards: shape.shardsPerBatch)
    if let svg { try checkOutputPath(svg, flag: "--svg") }
    if let most = counts.max(), let advice = idleWorkerAdvice(threads: most, options: shape) {
      Terminal.warn(advice)
    }
    let definition = try model.definition(input: nil)
    let plan = try ModelPlan(definition)
    let images = try Self.images(for: definition, count: max(steps, 10) * batchSize)
    let normalization = try Normalization(of: images)
    let warmUp = images.prefix(min(10 * batchSize, images.count))
    let timed = images.prefix(min(steps * batchSize, images.count))
    let timedSteps = (timed.count + batchSize - 1) / batchSize
    if timedSteps < steps {
      Terminal.warn(
        "--steps \(steps) of \(batchSize) images needs \(steps * batchSize) images, but the bench data has \(images.count): timing \(timedSteps) steps"
      )
    }
    var rows: [Row] = []
    for count in counts {
      if !json { Terminal.error("bench: \(count) thread(s)…") }
      let trainer = try Trainer(
        options: TrainingOptions(threads: count, epochs: 2, batchSize: batchSize), model: definition,
        normalization: normalization, topology: topology, processes: job)
      try trainer.train(warmUp, untilEpoch: 1)
      let before = trainer.profile
      let summary = try trainer.train(timed, untilEpoch: 2)
      let after = trainer.profile
      let peak = FMAPeak.measure(pool: trainer.pool)
      let gflops = summary.imagesPerSecond * Double(plan.executedTrainingFlopsPerImage) / 1e9
      let direct = summary.imagesPerSecond * Double(plan.trainingFlopsPerImage) / 1e9
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
          directConvolutionGflops: direct, fmaPeakGflops: peak, percentOfPeak: peak > 0 ? 100 * gflops / peak : 0,
          directConvolutionPercentOfPeak: peak > 0 ? 100 * direct / peak : 0, stepMilliseconds: split))
    }
    if let svg {
      let chart = ScalingChart.svg(
        rows: rows, model: definition.builtInName ?? "custom model", batchSize: batchSize, steps: timedSteps,
        cpu: CPUSupport.cpuName, level: CPUSupport.level)
      try writeFileAtomically(Array(chart.utf8), to: svg)
    }
    if json {
      struct Output: Encodable {
        let model: String
        let batchSize: Int
        let steps: Int
        let processes: Int
        let rows: [Row]
      }
      try printJSON(
        Output(model: definition.text, batchSize: batchSize, steps: timedSteps, processes: job.size, rows: rows))
      return
    }
    try Terminal.output(
      "\(definition.builtInName ?? definition.text): batch \(batchSize), \(timedSteps) timed steps; step split in ms per step, averaged over workers"
    )
    try Terminal.output(
      String(
        format:
          "GFLOP/s and %% FMA peak: executed by the kernels, %.2f MFLOP per image; direct %% peak: the %.2f MFLOP per image direct convolution would need, per second, as a share of the peak (it grows with speed)",
        Double(plan.executedTrainingFlopsPerImage) / 1e6, Double(plan.trainingFlopsPerImage) / 1e6))
    try Terminal.output(
      "a batch of \(batchSize) makes \(shape.shardsPerBatch) shard(s) of \(shape.shardSize) images; more threads than that would idle"
    )
    // Under MPI, each row is P processes × T threads, and the split gains their exchange.
    let processes = job.size
    try Terminal.output(
      (processes > 1 ? "processes × " : "")
        + "threads    img/s  speed-up  efficiency  GFLOP/s  % FMA peak  direct % peak  compute     sync  "
        + "reduce  optimizer    data  barrier" + (processes > 1 ? "  communicate" : ""))
    for row in rows {
      let ms = { (name: String) in String(format: "%7.3f", row.stepMilliseconds[name] ?? 0) }
      try Terminal.output(
        (processes > 1 ? String(format: "%9d × ", processes) : "")
          + String(
            format: "%7d  %7.0f  %7.2f×  %9.0f%%  %7.1f  %9.0f%%  %12.0f%%", row.threads, row.imagesPerSecond,
            row.speedup, row.efficiency * 100, row.gflops, row.percentOfPeak, row.directConvolutionPercentOfPeak)
          + "  \(ms("compute"))  \(ms("sync"))  \(ms("reduce"))    \(ms("optimizer")) \(ms("data"))  \(ms("barrier"))"
          + (processes > 1 ? "      \(ms("communicate"))" : ""))
    }
    try Terminal.output(
      String(
        format: "FMA peak measured on the same workers: %.1f GFLOP/s at %d thread(s)", rows.last!.fmaPeakGflops,
        rows.last!.threads))
    if let note = ScalingChart.superlinearNote(rows) { try Terminal.output("note: " + note) }
  }

  /// Training images for benchmarking `model`: the bundled MNIST's when it takes 28×28×1
  /// images, else `count` random images of its input shape with random labels (seeded, so
  /// every run sees the same), which is enough to measure speed.
  static func images(for model: ModelDefinition, count: Int) throws -> LabeledImages {
    if model.input == ImageShape(height: 28, width: 28, channels: 1) && model.classes >= 10 {
      return try Dataset.bundledMNIST().train
    }
    var generator = SeededGenerator(seed: 42)
    let pixels = (0..<(count * model.input.count)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
    let labels = (0..<count).map { _ in UInt8(generator.nextIndex(below: min(model.classes, 256))) }
    return try LabeledImages(pixels: pixels, labels: labels, classes: model.classes, shape: model.input)
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
