import ArgumentParser
import Foundation
import PTrain

struct TopologyCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "topology",
    abstract: "Show the machine as hwloc sees it and where N workers would be pinned.")

  @OptionGroup var placement: PlacementOptions

  @Option(
    parsing: .unconditional,
    help:
      "Workers to plan for, per process. (default: the physical cores the process may use, split among the MPI ranks on a node)"
  )
  var threads: Int?

  @Flag(help: "Print one JSON object instead of text.")
  var json = false

  func run() throws {
    let topology = try placement.topology()
    let threads = try threadCount(self.threads, topology: topology)
    let plan = topology.plan(threads: threads)
    // Under mpirun, the ranks on this node split its cores: each local rank's share,
    // unless mpirun bound each rank to CPUs of its own, where each plans inside them.
    let rankPlans =
      job.localSize > 1 && !topology.isRestricted
      ? (0..<job.localSize).map { topology.plan(threads: threads, localRank: $0, localRanks: job.localSize) } : nil
    if json {
      struct Report: Encodable {
        let packages, numaNodes, physicalCores, processingUnits: Int
        let caches: [Topology.Cache]
        let canBindThreads: Bool
        /// Every CPU of the machine, and those this process may use (workers go only there).
        let machineCpus: [Int]
        let allowedCpus: [Int]
        let plan: [Topology.Placement]
        /// Per node-local MPI rank, its workers' placements (absent outside mpirun).
        let localRankPlans: [[Topology.Placement]]?
      }
      try printJSON(
        Report(
          packages: topology.packages, numaNodes: topology.numaNodes,
          physicalCores: topology.physicalCores, processingUnits: topology.processingUnits,
          caches: topology.caches, canBindThreads: topology.canBindThreads, machineCpus: topology.machineCPUs,
          allowedCpus: topology.allowedCPUs, plan: rankPlans?[0] ?? plan,
          localRankPlans: rankPlans))
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
    let allowed = Set(topology.allowedCPUs)
    try Terminal.output(
      "CPUs this process may use: \(Topology.ranges(topology.allowedCPUs)) of "
        + topology.machineCPUs.map { allowed.contains($0) ? "\($0)" : "(\($0))" }.joined(separator: " ")
        + (topology.isRestricted ? "  (in parentheses: not allowed; workers never go there)" : ""))
    let titledPlans =
      rankPlans?.enumerated().map {
        ("plan for node-local MPI rank \($0.offset) of \(job.localSize), \(threads) worker(s):", $0.element)
      }
      ?? [
        (
          job.localSize > 1
            ? "plan for node-local MPI rank \(job.localRank) of \(job.localSize), \(threads) worker(s) (mpirun bound each rank to CPUs of its own; each plans inside them):"
            : "plan for \(threads) worker(s):", plan
        )
      ]
    for (title, plan) in titledPlans {
      try Terminal.output(title)
      for placement in plan {
        try Terminal.output("  worker \(placement.worker) → core \(placement.core), CPU \(placement.cpu)")
      }
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
