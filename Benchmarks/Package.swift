// swift-tools-version: 6.1
// Benchmarks live in their own package, as swift-nio's do, so that `swift build` and
// `swift test` of ptrain never build the benchmark dependencies.
import PackageDescription

let benchmarkTarget = { (name: String) in
  Target.executableTarget(
    name: name,
    dependencies: [
      .product(name: "PTrain", package: "ptrain"),
      .product(name: "Benchmark", package: "benchmark"),
    ],
    path: "Benchmarks/\(name)",
    plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")])
}

let package = Package(
  name: "ptrain-benchmarks",
  platforms: [.macOS(.v15)],
  dependencies: [
    .package(name: "ptrain", path: ".."),
    .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
  ],
  targets: [benchmarkTarget("KernelBenchmarks"), benchmarkTarget("TrainingStepBenchmarks")]
)
