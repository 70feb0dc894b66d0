/// What the fuzz targets in `Fuzz/` run on each input, kept in the library so that the
/// regression tests replay crash inputs through exactly the same code.
///
/// Each entry point may throw `PTrainError` for bad input (that is the point) but must
/// never crash, hang or allocate more than the input justifies. After a successful parse
/// it checks the result's own invariants and traps if they fail.
@_spi(Fuzzing) public enum FuzzEntryPoints {
  /// The IDX/gzip reader, as one and as three dimensions.
  public static func idx(_ bytes: [UInt8]) {
    for dimensionCount in [1, 3] {
      guard let file = try? IDXFile.decode(bytes, name: "fuzz", dimensionCount: dimensionCount) else { continue }
      precondition(file.dimensions.count == dimensionCount)
      precondition(file.bytes.count == file.dimensions.reduce(1, *))
      precondition(file.bytes.count <= IDXFile.maximumBytes)
    }
  }

  /// The JSON parser, the safetensors reader and the checkpoint loader.
  public static func safetensors(_ bytes: [UInt8]) {
    _ = try? JSONParser.parse(bytes)
    guard let file = try? SafeTensors.parse(bytes, name: "fuzz") else { return }
    for name in file.names {
      let entry = file.entries[name]!
      if let values = try? file.floats(name) {
        precondition(values.count == entry.shape.reduce(1, *))
      }
    }
    guard let checkpoint = try? Checkpoint(bytes: bytes, name: "fuzz") else { return }
    precondition(checkpoint.parameters.count == checkpoint.plan.parameterCount)
    precondition(checkpoint.runningStatistics.count == checkpoint.plan.stateCount)
    if let state = try? checkpoint.trainingState() {
      precondition(state.firstMoment.count == checkpoint.plan.parameterCount)
      precondition(state.secondMoment.allSatisfy { $0 >= 0 })
    }
  }
}
