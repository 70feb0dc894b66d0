/// Everything a run needs to continue bit for bit: the model, the hyper-parameters, the
/// parameters and BatchNorm statistics, the optimizer's state and step, the position in the
/// epoch and the generator.
public struct TrainingState: Sendable {
  public var model: ModelDefinition
  /// How the images are standardised.
  public var normalization: Normalization
  /// The run's hyper-parameters; `threads` is not part of the state.
  public var options: TrainingOptions
  /// The parameters in ptrain's layout (see `ModelPlan`).
  public var parameters: [Float]
  /// BatchNorm's running means and variances (`ModelPlan.stateTensors`), and the steps
  /// they have seen.
  public var runningStatistics: [Float]
  public var batchesTracked: Int
  /// The optimizer's state buffers, in its `stateNames`' order (Adam's two moments, SGD's
  /// momentum buffer).
  package var optimizerState: [[Float]]
  /// Optimizer steps taken (`optimizer_step` in the checkpoint's metadata; `adam_step` in
  /// files from before there were other optimizers).
  public var optimizerStep: Int
  /// Whole epochs finished, and steps finished in the epoch after them.
  public var epochsCompleted: Int
  public var stepsIntoEpoch: Int
  /// The generator as it was before it shuffled epoch `epochsCompleted + 1`; replaying
  /// that shuffle recovers the epoch's order.
  package var epochGenerator: SeededGenerator
  /// Summed loss and correct count of the steps finished in the current epoch.
  package var epochLoss: Double
  package var epochCorrect: Int
  /// Identifies the training data (see `LabeledImages.fingerprint`).
  package var dataFingerprint: String
}

extension TrainingState {
  /// Throws a one-line error unless the position is one a run can reach: epochs and
  /// steps within the run, a correct count no larger than the images seen, and nothing
  /// counted at the start of an epoch. Cost: O(1).
  package func validatePosition() throws {
    guard epochsCompleted <= options.epochs, epochsCompleted < options.epochs || stepsIntoEpoch == 0 else {
      throw PTrainError(
        "the position (epoch \(epochsCompleted) done, step \(stepsIntoEpoch) of the next) lies past the run's \(options.epochs) epochs"
      )
    }
    guard stepsIntoEpoch <= optimizerStep else {
      throw PTrainError(
        "steps_into_epoch \(stepsIntoEpoch) is more than optimizer_step \(optimizerStep), the optimizer steps taken")
    }
    let (seen, overflow) = stepsIntoEpoch.multipliedReportingOverflow(by: options.batchSize)
    guard overflow || epochCorrect <= seen else {
      throw PTrainError("epoch_correct \(epochCorrect) is more than the \(seen) images of the epoch's steps so far")
    }
    guard stepsIntoEpoch > 0 || (epochCorrect == 0 && epochLoss == 0) else {
      throw PTrainError("the epoch's loss and correct count are not zero at its first step")
    }
  }

  /// Throws a one-line error unless the position fits an epoch of `trainingImages`
  /// images: the step lies inside the epoch (or at its end: a state saved from the last
  /// step's event, before the epoch is counted as finished), and the optimizer's step count is
  /// the steps of the finished epochs plus this one's. Call before training on the data.
  /// Cost: O(1).
  package func validatePosition(trainingImages: Int) throws {
    try validatePosition()
    let steps = (trainingImages + options.batchSize - 1) / options.batchSize
    guard stepsIntoEpoch <= steps else {
      throw PTrainError(
        "steps_into_epoch \(stepsIntoEpoch) is past the \(steps) steps of an epoch of \(trainingImages) images")
    }
    let finished = epochsCompleted.multipliedReportingOverflow(by: steps)
    let total = finished.partialValue.addingReportingOverflow(stepsIntoEpoch)
    guard !finished.overflow, !total.overflow, total.partialValue == optimizerStep else {
      throw PTrainError(
        "optimizer_step \(optimizerStep) is not the \(epochsCompleted) epoch(s) of \(steps) steps plus \(stepsIntoEpoch) that the position implies"
      )
    }
    guard epochCorrect <= min(stepsIntoEpoch * options.batchSize, trainingImages) else {
      throw PTrainError("epoch_correct \(epochCorrect) is more than the images of the epoch's steps so far")
    }
  }
}
