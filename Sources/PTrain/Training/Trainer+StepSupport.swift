/// What `train` and the workers' steps ask of the trainer besides the steps themselves:
/// checks before a run, the parameter slices each worker reduces and updates, the phase
/// profile, BatchNorm's running statistics, and the record of a non-finite step.
extension Trainer {
  /// Throws, on every rank, unless every rank holds the same model, options (but for the
  /// thread count), parameters, position and data: ranks started with other flags or other
  /// files would otherwise train different models in lockstep. Cost: one hash of the
  /// parameters and one small collective.
  func requireTheSameRunOnEveryRank(fingerprint: String, target: Int) throws {
    let o = options
    let run = [
      model.text, normalization.description, "\(o.epochs) \(o.batchSize) \(o.learningRate) \(o.seed) \(o.shardSize)",
      "\(o.frozen.sorted()) \(o.augmentation)", fingerprint, "\(epochsCompleted) \(stepsIntoEpoch) \(optimizer.step)",
      "\(target)", parametersSHA256,
    ].joined(separator: "\n")
    var hash = SHA256()
    hash.update(Array(run.utf8))
    let digest = hash.finalize().prefix(8).reduce(Int64(0)) { $0 << 8 | Int64($1) }
    let all = processes.allgather([digest])
    if let other = all.firstIndex(where: { $0 != all[0] }) {
      throw PTrainError(
        "the \(processes.size) MPI processes disagree: rank \(other) has other options, model, data or starting point than rank 0; start every rank with the same flags and data"
      )
    }
  }

  /// Throws unless `data`'s images have the model's input shape.
  func requireShape(of data: LabeledImages, _ name: String) throws {
    guard data.shape == model.input else {
      throw PTrainError("the \(name) are \(data.shape) images but the model's input is \(model.input)")
    }
  }

  /// Adds the workers' phase times to `profile` and clears them.
  func collectProfile() {
    let workers = pool.count
    for worker in 0..<workers {
      let times = phaseNanoseconds + worker * Self.phaseStride
      let scale = 1e-9 / Double(workers)
      func seconds(_ phase: TrainingPhase) -> Double { Double(times[phase.rawValue]) * scale }
      profile.compute += seconds(.compute)
      profile.barrier += seconds(.barrier)
      profile.reduce += seconds(.reduce)
      profile.optimizer += seconds(.optimizer)
      profile.sync += seconds(.sync)
      profile.communicate += seconds(.communicate)
      for phase in TrainingPhase.allCases { times[phase.rawValue] = 0 }
    }
  }

  /// The parameter ranges of the layers that train.
  var trainableRanges: [Range<Int>] {
    plan.parameterLayers.filter { !options.frozen.contains($0.index) }.map(\.parameterRange)
  }

  /// The parameter ranges worker `worker` of `workers` reduces and updates: its share of
  /// the trainable layers' parameters, cut into slices of a multiple of 16.
  func ranges(ofWorker worker: Int, workers: Int) -> [Range<Int>] {
    let trainable = trainableRanges
    let total = trainable.reduce(0) { $0 + $1.count }
    let sliceLength = roundUp((total + workers - 1) / workers, toMultipleOf: 16)
    var wanted = min(worker * sliceLength, total)..<min((worker + 1) * sliceLength, total)
    var result: [Range<Int>] = []
    for range in trainable {
      let take = min(wanted.lowerBound, range.count)..<min(wanted.upperBound, range.count)
      if !take.isEmpty { result.append((range.lowerBound + take.lowerBound)..<(range.lowerBound + take.upperBound)) }
      wanted = max(wanted.lowerBound - range.count, 0)..<max(wanted.upperBound - range.count, 0)
    }
    return result
  }

  /// Moves every BatchNorm's running statistics towards this step's batch statistics
  /// (`BatchNormLayer.updateRunningStatistics`). Cost: O(channels).
  func updateRunningStatistics(from replica: Replica) {
    guard !plan.batchNormLayers.isEmpty else { return }
    for index in plan.batchNormLayers {
      let (mean, variance) = replica.batchStatistics(layer: index)
      BatchNormLayer.updateRunningStatistics(
        of: plan.layers[index], mean: mean, variance: variance, in: runningStatistics.base)
    }
    batchesTracked += 1
  }

  /// Records why training stopped at `step`: the tensor of the first non-finite
  /// gradient and the non-finite loss, whichever were seen.
  func recordFailure(step: Int, gradientIndex: Int?, loss: Float?) {
    var what: [String] = []
    if let loss { what.append("loss (\(loss))") }
    if let gradientIndex, let tensor = plan.tensor(containing: gradientIndex) {
      what.append("gradient in layer \(plan.layers[tensor.layer].name) (\(tensor.name))")
    }
    failure = PTrainError(
      "non-finite \(what.joined(separator: " and ")) at epoch \(epochsCompleted + 1), step \(step + 1) (global step \(optimizer.step + 1)); stopped before applying it, so the parameters are those of the step before"
    )
  }
}
