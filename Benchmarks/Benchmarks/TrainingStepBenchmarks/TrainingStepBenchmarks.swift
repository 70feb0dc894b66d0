import Benchmark
import PTrain

// One training-step benchmark per thread count (1, 2, 4, … up to the physical cores),
// tagged with the count, reporting images/s. Each iteration trains 20 steps of batch 32.

let imagesPerSecond = BenchmarkMetric.custom("images/s", polarity: .prefersLarger, useScalingFactor: false)

let benchmarks: @Sendable () -> Void = {
  let mnist = try! Dataset.bundledMNIST()
  let steps = 20
  let batch = 32
  let data = mnist.train.prefix(steps * batch)
  let cores = try! Topology().physicalCores
  var counts: [Int] = []
  var count = 1
  while count < cores {
    counts.append(count)
    count *= 2
  }
  counts.append(cores)
  for threads in counts {
    Benchmark(
      "training step",
      configuration: .init(
        metrics: [.wallClock, imagesPerSecond], tags: ["threads": "\(threads)"], maxDuration: .seconds(3),
        maxIterations: 100)
    ) { benchmark, trainer in
      for _ in benchmark.scaledIterations {
        let summary = try trainer.train(data, untilEpoch: trainer.epochsCompleted + 1)
        benchmark.measurement(imagesPerSecond, Int(summary.imagesPerSecond))
      }
    } setup: {
      try Trainer(options: TrainingOptions(threads: threads, epochs: 1, batchSize: batch), normalization: .mnist)
    }
  }
}
