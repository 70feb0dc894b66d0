import CHwloc

/// The machine as hwloc sees it, and where ptrain's workers go on it.
///
/// Owns the hwloc topology handle, which is read-only after loading and so safe to use
/// from every worker thread. Only the CPUs this process may use (`allowedCPUs`) are
/// counted and planned on.
///
/// `@unchecked Sendable` because the handle is a C pointer: hwloc documents a loaded
/// topology as safe for concurrent reads, and nothing here modifies it after `init`.
public final class Topology: @unchecked Sendable {
  /// One cache level's count and size.
  public struct Cache: Sendable, Equatable, Codable {
    public let level: Int
    public let count: Int
    public let bytes: Int
  }

  /// Where one worker runs: a physical core and one of its PUs (hardware threads).
  public struct Placement: Sendable, Equatable, Codable {
    public let worker: Int
    /// The core's logical index (0..<physicalCores).
    public let core: Int
    /// The operating system's CPU number of the PU.
    public let cpu: Int
  }

  private let handle: hwloc_topology_t
  public let packages: Int
  public let numaNodes: Int
  /// For each physical core in logical order, the OS CPU numbers of its PUs.
  public let coreCPUs: [[Int]]
  public let caches: [Cache]
  /// Whether this system lets a thread bind itself to a CPU.
  public let canBindThreads: Bool

  public var physicalCores: Int { coreCPUs.count }
  public var processingUnits: Int { coreCPUs.reduce(0) { $0 + $1.count } }

  /// Loads the topology of this machine. Cost: a few milliseconds (reads sysfs).
  /// The OS CPU numbers of every PU the machine lets processes use (cgroup cpusets
  /// applied), whether or not this process may.
  public let machineCPUs: [Int]
  /// The CPUs this process may run on, ascending: its binding (`taskset`, `numactl`,
  /// Slurm, `mpirun --bind-to`), within `machineCPUs`, narrowed by `init(cpus:)`. Workers
  /// are planned only here, and `physicalCores` counts the cores that have one.
  public let allowedCPUs: [Int]
  /// Whether the process is bound to fewer CPUs than the machine's.
  public var isRestricted: Bool { allowedCPUs.count < machineCPUs.count }

  /// Loads the machine's topology and this process's allowed CPUs, narrowed to `cpus`
  /// when given. Throws when hwloc cannot load the topology, or when `cpus` names a CPU
  /// the process may not use. Cost: one topology load (about a millisecond).
  public init(cpus: [Int]? = nil) throws {
    var topology: hwloc_topology_t?
    let initStatus = hwloc_topology_init(&topology)
    guard initStatus == 0, let topology else {
      throw PTrainError("hwloc could not initialise a topology")
    }
    let loadStatus = hwloc_topology_load(topology)
    guard loadStatus == 0 else {
      hwloc_topology_destroy(topology)
      throw PTrainError("hwloc could not load this machine's topology")
    }
    handle = topology
    let machine = Topology.cpus(in: hwloc_topology_get_allowed_cpuset(topology))
    var bound = machine
    if let set = hwloc_bitmap_alloc() {
      defer { hwloc_bitmap_free(set) }
      if hwloc_get_cpubind(topology, set, Int32(HWLOC_CPUBIND_PROCESS.rawValue)) == 0 {
        let binding = Set(Topology.cpus(in: set))
        let inside = machine.filter(binding.contains)
        if !inside.isEmpty { bound = inside }
      }
    }
    if let cpus {
      let boundSet = Set(bound)
      if let outside = cpus.first(where: { !boundSet.contains($0) }) {
        hwloc_topology_destroy(topology)
        throw PTrainError(
          option: "cpus", "names CPU \(outside), which this process may not use (allowed: \(Topology.ranges(bound)))")
      }
      bound = bound.filter(Set(cpus).contains)
    }
    machineCPUs = machine
    allowedCPUs = bound
    let allowed = Set(bound)
    func count(_ type: hwloc_obj_type_t) -> Int {
      Int(max(hwloc_get_nbobjs_by_type(topology, type), 0))
    }
    packages = max(count(HWLOC_OBJ_PACKAGE), 1)
    numaNodes = max(count(HWLOC_OBJ_NUMANODE), 1)
    var cores: [[Int]] = []
    for index in 0..<count(HWLOC_OBJ_CORE) {
      guard let core = hwloc_get_obj_by_type(topology, HWLOC_OBJ_CORE, UInt32(index)) else { continue }
      let cpus = Topology.cpus(in: core.pointee.cpuset).filter(allowed.contains)
      if !cpus.isEmpty { cores.append(cpus) }
    }
    if cores.isEmpty {  // Some virtual machines report PUs without cores.
      for index in 0..<count(HWLOC_OBJ_PU) {
        if let pu = hwloc_get_obj_by_type(topology, HWLOC_OBJ_PU, UInt32(index)),
          allowed.contains(Int(pu.pointee.os_index))
        {
          cores.append([Int(pu.pointee.os_index)])
        }
      }
    }
    coreCPUs = cores
    var caches: [Cache] = []
    for (level, type) in [(1, HWLOC_OBJ_L1CACHE), (2, HWLOC_OBJ_L2CACHE), (3, HWLOC_OBJ_L3CACHE)] {
      let n = count(type)
      guard n > 0, let first = hwloc_get_obj_by_type(topology, type, 0), let attr = first.pointee.attr
      else { continue }
      caches.append(Cache(level: level, count: n, bytes: Int(attr.pointee.cache.size)))
    }
    self.caches = caches
    let support = hwloc_topology_get_support(topology)
    canBindThreads = support?.pointee.cpubind?.pointee.set_thread_cpubind ?? 0 != 0
  }

  deinit { hwloc_topology_destroy(handle) }

  /// Where `threads` workers go: one per physical core first, then the second PU of
  /// each core, and so on; past the PU count, placements wrap around (oversubscribed).
  /// Cost: O(threads + PUs).
  public func plan(threads: Int) -> [Placement] {
    var order: [(core: Int, cpu: Int)] = []
    let deepest = coreCPUs.map(\.count).max() ?? 0
    for round in 0..<deepest {
      for (core, cpus) in coreCPUs.enumerated() where round < cpus.count {
        order.append((core, cpus[round]))
      }
    }
    return (0..<threads).map { worker in
      let slot = order[worker % order.count]
      return Placement(worker: worker, core: slot.core, cpu: slot.cpu)
    }
  }

  /// The share of this node's plan for `localRanks` processes of `threads` workers each
  /// that belongs to the process with node-local rank `localRank`: its workers' cores, so
  /// that no two processes on a node pin to one core (until they outnumber its CPUs).
  public func plan(threads: Int, localRank: Int, localRanks: Int) -> [Placement] {
    plan(threads: threads * localRanks)[(localRank * threads)..<((localRank + 1) * threads)].enumerated().map {
      Placement(worker: $0.offset, core: $0.element.core, cpu: $0.element.cpu)
    }
  }

  /// Binds the calling thread to the single CPU `cpu`. Returns false where binding is
  /// not supported or fails. Cost: one system call.
  @discardableResult
  package func bindCurrentThread(toCPU cpu: Int) -> Bool {
    guard canBindThreads, let set = hwloc_bitmap_alloc() else { return false }
    defer { hwloc_bitmap_free(set) }
    hwloc_bitmap_only(set, UInt32(cpu))
    return hwloc_set_cpubind(handle, set, Int32(HWLOC_CPUBIND_THREAD.rawValue)) == 0
  }

  /// The OS CPU numbers the calling thread is allowed to run on. Cost: one system call.
  public func currentThreadBinding() -> [Int] {
    guard let set = hwloc_bitmap_alloc() else { return [] }
    defer { hwloc_bitmap_free(set) }
    guard hwloc_get_cpubind(handle, set, Int32(HWLOC_CPUBIND_THREAD.rawValue)) == 0 else { return [] }
    return Topology.cpus(in: set)
  }

  /// The OS CPU number the calling thread ran on most recently, or nil if unknown.
  /// Cost: one system call.
  package func currentCPU() -> Int? {
    guard let set = hwloc_bitmap_alloc() else { return nil }
    defer { hwloc_bitmap_free(set) }
    guard hwloc_get_last_cpu_location(handle, set, Int32(HWLOC_CPUBIND_THREAD.rawValue)) == 0 else { return nil }
    return Topology.cpus(in: set).first
  }

  /// `cpus` (ascending) as a list of ranges, as `taskset -c` and `--cpus` write it: "0-3,8".
  public static func ranges(_ cpus: [Int]) -> String {
    var parts: [String] = []
    var index = 0
    while index < cpus.count {
      var end = index
      while end + 1 < cpus.count && cpus[end + 1] == cpus[end] + 1 { end += 1 }
      parts.append(end == index ? "\(cpus[index])" : "\(cpus[index])-\(cpus[end])")
      index = end + 1
    }
    return parts.joined(separator: ",")
  }

  /// The CPU numbers of a list such as "0-3,8", or nil when it is malformed.
  public static func parseCPUs(_ text: String) -> [Int]? {
    var cpus: [Int] = []
    for part in text.split(separator: ",", omittingEmptySubsequences: false) {
      let bounds = part.split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
      guard (1...2).contains(bounds.count), let first = bounds.first!, let last = bounds.last!, first >= 0,
        first <= last, last < 1 << 16
      else { return nil }
      cpus += Array(first...last)
    }
    return cpus.isEmpty ? nil : Array(Set(cpus)).sorted()
  }

  /// The OS CPU numbers set in an hwloc bitmap, ascending.
  private static func cpus(in set: hwloc_const_cpuset_t?) -> [Int] {
    guard let set else { return [] }
    var cpus: [Int] = []
    var index = hwloc_bitmap_first(set)
    while index >= 0 {
      cpus.append(Int(index))
      index = hwloc_bitmap_next(set, index)
    }
    return cpus
  }
}
