import Foundation
import PTrain

extension RunSummary {
  /// Throws a one-line error naming the first field of a summary read back from JSON
  /// that disagrees with the others or lies out of range (arrays of other lengths, a
  /// negative count, an accuracy above 1), so that a hand-edited or foreign file is
  /// refused before a report is drawn from it. Cost: O(classes²).
  func validate() throws {
    let classes = confusionMatrix.count
    guard (1...Checkpoint.maximumClasses).contains(classes) else {
      throw PTrainError("confusion_matrix has \(classes) rows; a run has 1 to \(Checkpoint.maximumClasses) classes")
    }
    for (index, row) in confusionMatrix.enumerated() {
      guard row.count == classes else {
        throw PTrainError("confusion_matrix row \(index) has \(row.count) entries, not \(classes)")
      }
      guard row.allSatisfy({ $0 >= 0 }) else {
        throw PTrainError("confusion_matrix row \(index) holds a negative count")
      }
    }
    guard perClass.count == classes else {
      throw PTrainError("per_class has \(perClass.count) entries but confusion_matrix has \(classes) rows")
    }
    if let classNames, classNames.count != classes {
      throw PTrainError("class_names has \(classNames.count) names but confusion_matrix has \(classes) rows")
    }
    func share(_ value: Double) -> Bool { value.isFinite && (0...1).contains(value) }
    for (index, metrics) in perClass.enumerated() {
      guard share(metrics.precision), share(metrics.recall), share(metrics.f1), metrics.support >= 0 else {
        throw PTrainError(
          "per_class[\(index)] holds a value out of range (precision, recall, f1 in 0...1, support ≥ 0)")
      }
    }
    guard share(testAccuracy) else { throw PTrainError("test_accuracy \(testAccuracy) is not in 0...1") }
    for (field, value) in [("threads", threads), ("batch_size", batchSize), ("epochs", epochs)] where value < 1 {
      throw PTrainError("\(field) \(value) is not a positive integer")
    }
    guard trainImages >= 0 else { throw PTrainError("train_images \(trainImages) is negative") }
    for (field, value) in [("seconds", seconds), ("images_per_second", imagesPerSecond)]
    where !value.isFinite || value < 0 {
      throw PTrainError("\(field) \(value) is not a non-negative number")
    }
    try Self.validate(history: history)
  }

  /// Throws naming the first epoch of `history` (a summary's, or a checkpoint's
  /// `__metadata__.history`) with a value out of range. Cost: O(epochs).
  static func validate(history: [Epoch]) throws {
    func share(_ value: Double) -> Bool { value.isFinite && (0...1).contains(value) }
    guard history.count <= TrainingOptions.maximumEpochs else {
      throw PTrainError("history has \(history.count) epochs, over \(TrainingOptions.maximumEpochs)")
    }
    for (index, epoch) in history.enumerated() {
      let numbers = [epoch.trainLoss, epoch.imagesPerSecond] + [epoch.testLoss].compactMap { $0 }
      guard epoch.epoch >= 1, share(epoch.trainAccuracy), epoch.testAccuracy.map(share) ?? true,
        numbers.allSatisfy({ $0.isFinite && $0 >= 0 })
      else {
        throw PTrainError("history[\(index)] holds a value out of range")
      }
    }
  }

  /// The epochs a checkpoint's `__metadata__.history` records, checked; throws naming
  /// `source` when the text is not such a list or holds a value out of range.
  static func history(decoding text: String, of source: String) throws -> [Epoch] {
    let history: [Epoch]
    do { history = try JSONDecoder().decode([Epoch].self, from: Data(text.utf8)) } catch {
      throw PTrainError("\(source): __metadata__.history is not a list of epochs")
    }
    do { try validate(history: history) } catch let error as PTrainError {
      throw PTrainError("\(source): __metadata__.\(error)")
    }
    return history
  }
}
