import ArgumentParser
import Foundation
import PTrain

struct TopologyCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "topology",
    abstract: "Show the machine as hwloc sees it and where N workers would be pinned.")

  @Option(help: "Workers to plan for (default: the number of physical cores).")
  var threads: Int?

  @Flag(help: "Print one JSON object instead of text.")
  var json = false

  func run() throws {
    let topology = try Topology()
    let threads = try threadCount(self.threads, topology: topology)
    let plan = topology.plan(threads: threads)
    if json {
      struct Report: Encodable {
        let packages, numaNodes, physicalCores, processingUnits: Int
        let caches: [Topology.Cache]
        let canBindThreads: Bool
        let plan: [Topology.Placement]
      }
      try printJSON(
        Report(
          packages: topology.packages, numaNodes: topology.numaNodes,
          physicalCores: topology.physicalCores, processingUnits: topology.processingUnits,
          caches: topology.caches, canBindThreads: topology.canBindThreads, plan: plan))
      return
    }
    try Terminal.output(
      "machine: \(topology.packages) package(s), \(topology.numaNodes) NUMA node(s), \(topology.physicalCores) physical core(s), \(topology.processingUnits) PU(s)"
    )
    for cache in topology.caches {
      try Terminal.output("  L\(cache.level): \(cache.count) × \(formatBytes(cache.bytes))")
    }
    try Terminal.output(
      "thread binding: \(topology.canBindThreads ? "supported" : "not supported (workers will float)")")
    try Terminal.output("plan for \(threads) worker(s):")
    for placement in plan {
      try Terminal.output("  worker \(placement.worker) → core \(placement.core), CPU \(placement.cpu)")
    }
    if threads > topology.processingUnits {
      Terminal.warn("\(threads) workers on \(topology.processingUnits) CPUs: several workers share a CPU")
    }
  }
}

/// `bytes` as KiB or MiB.
func formatBytes(_ bytes: Int) -> String {
  bytes >= 1 << 20 ? "\(bytes >> 20) MiB" : "\(bytes >> 10) KiB"
}

/// Prints `value` as one line of JSON on stdout, keys sorted and in snake_case.
func printJSON<T: Encodable>(_ value: T) throws {
  let encoder = JSONEncoder()
  encoder.outputFormatting = [.sortedKeys]
  encoder.keyEncodingStrategy = .convertToSnakeCase
  try Terminal.output(String(decoding: try encoder.encode(value), as: UTF8.self))
}
