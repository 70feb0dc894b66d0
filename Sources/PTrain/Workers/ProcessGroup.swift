#if MPI
  import CMPI
#endif
#if canImport(Glibc)
  import Glibc
#endif

/// The processes that train one model together: this process's rank among `size`, and
/// its place among the ranks on its own node (which split the node's cores).
///
/// A single process (`ProcessGroup.single`) unless ptrain was built with the `MPI` trait
/// and started by `mpirun`; then `world()` joins the job. A `Trainer` given a group of
/// several ranks computes a contiguous block of each step's shards per rank and exchanges
/// partial sums so that every rank ends each step with the same parameters, bit for bit
/// those of a single process at any thread count.
///
/// `@unchecked Sendable` because it holds MPI handles: MPI is initialised with
/// `MPI_THREAD_SERIALIZED`, and the trainer makes its collective calls from one thread at
/// a time (worker 0 during a step, the caller between steps).
public final class ProcessGroup: @unchecked Sendable {
  /// This process's rank, from 0, and the number of processes.
  public let rank: Int, size: Int
  /// This process's rank among those on its node, and how many share the node.
  public let localRank: Int, localSize: Int

  /// One process on its own.
  public static let single = ProcessGroup(rank: 0, size: 1, localRank: 0, localSize: 1)

  private init(rank: Int, size: Int, localRank: Int, localSize: Int) {
    self.rank = rank
    self.size = size
    self.localRank = localRank
    self.localSize = localSize
  }

  /// Whether this build can train across processes (it was built with the `MPI` trait).
  public static var isAvailable: Bool {
    #if MPI
      true
    #else
      false
    #endif
  }

  /// How many processes the launcher says it started: Open MPI's `OMPI_COMM_WORLD_SIZE`
  /// (or `PMI_SIZE`, `PMIX_SIZE`), 1 outside a launcher.
  public static var launchedProcesses: Int {
    for name in ["OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"] {
      if let value = getenv(name).flatMap({ Int(String(cString: $0)) }) { return value }
    }
    return 1
  }

  /// The job's processes: joins MPI when the launcher started more than one, else
  /// `single`. Throws when it started several but this build has no MPI, so that the
  /// processes do not train one model each and overwrite each other's checkpoints.
  public static func world() throws -> ProcessGroup {
    let launched = launchedProcesses
    #if MPI
      guard launched > 1 else { return .single }
      var provided: Int32 = 0
      guard MPI_Init_thread(nil, nil, ptrain_mpi_thread_serialized(), &provided) == MPI_SUCCESS else {
        throw PTrainError("MPI_Init_thread failed")
      }
      guard provided >= ptrain_mpi_thread_serialized() else {
        throw PTrainError("this MPI library does not allow calls from worker threads (MPI_THREAD_SERIALIZED)")
      }
      var rank: Int32 = 0
      var size: Int32 = 0
      MPI_Comm_rank(ptrain_mpi_comm_world(), &rank)
      MPI_Comm_size(ptrain_mpi_comm_world(), &size)
      var node: MPI_Comm? = nil
      MPI_Comm_split_type(
        ptrain_mpi_comm_world(), ptrain_mpi_comm_type_shared(), rank, ptrain_mpi_info_null(), &node)
      var localRank: Int32 = 0
      var localSize: Int32 = 1
      MPI_Comm_rank(node, &localRank)
      MPI_Comm_size(node, &localSize)
      MPI_Comm_free(&node)
      return ProcessGroup(rank: Int(rank), size: Int(size), localRank: Int(localRank), localSize: Int(localSize))
    #else
      guard launched <= 1 else {
        throw PTrainError(
          "started as one of \(launched) MPI processes, but this build has no MPI; build with the MPI trait (swift build --traits MPI)"
        )
      }
      return .single
    #endif
  }

  /// Ends MPI for a group of several ranks; call once, after the last collective.
  public func finish() {
    #if MPI
      if size > 1 { MPI_Finalize() }
    #endif
  }

  /// Stops every rank of the job with exit status `code` (MPI_Abort); a single process
  /// just exits.
  public func abort(code: Int32) -> Never {
    #if MPI
      if size > 1 { MPI_Abort(ptrain_mpi_comm_world(), code) }
    #endif
    exit(code)
  }

  /// The element types the collectives move.
  package enum Element {
    case float, double, int64
  }

  /// In place: rank `r`'s `counts[r]` elements, which follow the lower ranks' in `base`,
  /// are copied to every rank (MPI_Allgatherv). Cost: the whole buffer over the network.
  package func allgather(_ base: UnsafeMutableRawPointer, counts: [Int], of element: Element) {
    #if MPI
      guard size > 1 else { return }
      let counts32 = counts.map { Int32($0) }
      var displacements: [Int32] = []
      var next: Int32 = 0
      for count in counts32 {
        displacements.append(next)
        next += count
      }
      MPI_Allgatherv(
        ptrain_mpi_in_place(), 0, Self.type(element), base, counts32, displacements, Self.type(element),
        ptrain_mpi_comm_world())
    #endif
  }

  /// Sends `send`'s `sendCounts[r]` Floats (one run after another, in rank order) to each
  /// rank `r`, and puts in `received` what every rank sent this one, `receiveCounts[r]`
  /// from rank `r`, in rank order (MPI_Alltoallv); `received` grows when it must.
  /// Cost: the bytes moved.
  package func exchange(
    _ send: [Float], sendCounts: [Int], into received: inout [Float], receiveCounts: [Int]
  ) {
    #if MPI
      guard size > 1 else { return }
      func displacements(_ counts: [Int]) -> [Int32] {
        var result: [Int32] = []
        var next = 0
        for count in counts {
          result.append(Int32(next))
          next += count
        }
        return result
      }
      let needed = max(receiveCounts.reduce(0, +), 1)
      if received.count < needed { received = [Float](repeating: 0, count: needed) }
      let sendBuffer = send.isEmpty ? [0] : send
      MPI_Alltoallv(
        sendBuffer, sendCounts.map { Int32($0) }, displacements(sendCounts), ptrain_mpi_float(), &received,
        receiveCounts.map { Int32($0) }, displacements(receiveCounts), ptrain_mpi_float(), ptrain_mpi_comm_world())
    #endif
  }

  /// Every rank's `values` (the same count on each), rank after rank (MPI_Allgather).
  package func allgather(_ values: [Int64]) -> [Int64] {
    #if MPI
      guard size > 1 else { return values }
      var result = [Int64](repeating: 0, count: values.count * size)
      MPI_Allgather(
        values, Int32(values.count), ptrain_mpi_int64(), &result, Int32(values.count), ptrain_mpi_int64(),
        ptrain_mpi_comm_world())
      return result
    #else
      return values
    #endif
  }

  /// The largest of every rank's `value` (MPI_Allreduce with MPI_MAX, which is exact).
  package func maximum(_ value: Int) -> Int {
    #if MPI
      guard size > 1 else { return value }
      var mine = Int64(value)
      var result: Int64 = 0
      MPI_Allreduce(&mine, &result, 1, ptrain_mpi_int64(), ptrain_mpi_max(), ptrain_mpi_comm_world())
      return Int(result)
    #else
      return value
    #endif
  }

  #if MPI
    private static func type(_ element: Element) -> MPI_Datatype? {
      switch element {
      case .float: ptrain_mpi_float()
      case .double: ptrain_mpi_double()
      case .int64: ptrain_mpi_int64()
      }
    }
  #endif
}
