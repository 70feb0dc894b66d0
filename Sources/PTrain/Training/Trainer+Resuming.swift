/// Continuing a saved run.
extension Trainer {
  /// Continues the run that `state` was saved from, on `threads` workers, until
  /// `epochs` epochs are complete (the saved run's target by default). Training from
  /// here gives bit-identical results to never having stopped.
  public convenience init(
    resuming state: TrainingState, threads: Int, epochs: Int? = nil, topology: Topology? = nil,
    processes: ProcessGroup = .single, trainingImages: Int? = nil
  ) throws {
    var options = state.options
    options.threads = threads
    if let epochs { options.epochs = epochs }
    try self.init(
      options: options, model: state.model, normalization: state.normalization, topology: topology,
      processes: processes, trainingImages: trainingImages)
    guard state.parameters.count == plan.parameterCount, state.runningStatistics.count == plan.stateCount,
      state.optimizerState.count == optimizer.stateNames.count,
      state.optimizerState.allSatisfy({ $0.count == plan.parameterCount })
    else {
      throw PTrainError(
        "the state does not fit its model and optimizer (\(optimizer.stateNames.count) state buffer(s) of \(plan.parameterCount) values)"
      )
    }
    parameters.copy(from: state.parameters)
    runningStatistics.copy(from: state.runningStatistics)
    batchesTracked = state.batchesTracked
    optimizer.restore(step: state.optimizerStep, state: state.optimizerState)
    epochsCompleted = state.epochsCompleted
    stepsIntoEpoch = state.stepsIntoEpoch
    epochGenerator = state.epochGenerator
    epochLoss = state.epochLoss
    epochCorrect = state.epochCorrect
    dataFingerprint = state.dataFingerprint
  }
}
