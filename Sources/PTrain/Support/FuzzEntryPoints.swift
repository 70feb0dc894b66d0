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

  /// The most pixels an image may claim for the image target to decode it: the harness
  /// keeps its buffers within what a fuzz input justifies.
  static let maximumFuzzedPixels = 1 << 20

  /// The PNG and JPEG decoders (libpng and libjpeg-turbo through `CImageCodecs`) and the
  /// resize: the header, then a decode into 1 and into 3 channels of a 7 × 5 input.
  public static func image(_ bytes: [UInt8]) {
    guard let header = try? ImageDecoder.header(of: bytes, path: "fuzz") else { return }
    precondition(header.width >= 1 && header.height >= 1)
    guard header.width * header.height <= maximumFuzzedPixels else { return }
    for channels in [1, 3] {
      let shape = ImageShape(height: 7, width: 5, channels: channels)
      var pixels = [UInt8](repeating: 0, count: shape.count)
      _ = try? pixels.withUnsafeMutableBufferPointer {
        try ImageDecoder.decode(bytes, header: header, path: "fuzz", into: $0.baseAddress!, shape: shape)
      }
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
      let optimizer = state.options.optimizer.makeOptimizer(parameterCount: 0)
      precondition(state.optimizerState.count == optimizer.stateNames.count)
      precondition(state.optimizerState.allSatisfy { $0.count == checkpoint.plan.parameterCount })
      for (name, values) in zip(optimizer.stateNames, state.optimizerState) {
        precondition(values.allSatisfy { optimizer.isValid($0, inState: name) })
      }
    }
  }

  /// What `finetune` does with a checkpoint and a model text before training: the input is
  /// the model text up to the first newline (empty: the checkpoint's own model; a leading
  /// `!`: with a new head), then the checkpoint's bytes. The checkpoint is read, the text
  /// planned on its input, and the layers with parameters (but a new head) copied from it.
  public static func finetune(_ bytes: [UInt8]) {
    let newline = bytes.firstIndex(of: 0x0A) ?? bytes.endIndex
    var text = String(decoding: bytes[..<newline], as: UTF8.self)
    let file = Array(bytes[min(newline + 1, bytes.endIndex)...])
    guard let checkpoint = try? Checkpoint(bytes: file, name: "fuzz") else { return }
    let newHead = text.hasPrefix("!")
    if newHead { text.removeFirst() }
    guard
      let model = text.isEmpty
        ? checkpoint.model : try? ModelDefinition(parsing: text, input: checkpoint.model.input),
      let plan = try? ModelPlan(model)
    else { return }
    // Training would first estimate and refuse what the memory cannot hold; the harness
    // keeps its own buffers within what the input justifies.
    guard plan.parameterCount <= checkpoint.plan.parameterCount + (1 << 22) else { return }
    let head = plan.layers.count - 1
    let loaded = Set(plan.parameterLayers.map(\.index).filter { !(newHead && $0 == head) })
    var parameters = [Float](repeating: .nan, count: plan.parameterCount)
    var statistics = plan.initialState
    let copied = checkpoint.parameters.withUnsafeBufferPointer { values in
      checkpoint.runningStatistics.withUnsafeBufferPointer { state in
        (try? plan.copyLayers(
          loaded, from: checkpoint.plan, values: values, state: state, into: &parameters, statistics: &statistics))
          != nil
      }
    }
    guard copied else { return }
    for index in loaded {
      precondition(plan.layers[index].parameterRange.allSatisfy { parameters[$0].isFinite })  // every copied one
    }
  }
}
