/// Loss, accuracy and per-class quality of a model on labelled data.
public struct Evaluation: Sendable, Codable, Equatable {
  /// Precision, recall and F1 of one class.
  public struct ClassMetrics: Sendable, Codable, Equatable {
    public let precision: Double
    public let recall: Double
    public let f1: Double
    /// How many examples truly belong to the class.
    public let support: Int
  }

  public let count: Int
  /// Mean cross-entropy; not finite when some example's outputs overflowed.
  public let loss: Double
  /// The examples whose loss is not finite: their logits overflowed (or were NaN).
  public let nonFiniteLosses: Int
  public let accuracy: Double
  /// `confusion[truth][prediction]` counts.
  public let confusion: [[Int]]
  public let classes: [ClassMetrics]

  /// Builds the metrics from per-example losses and predictions, summing in index order
  /// so that the result does not depend on who computed which example. Cost: O(count).
  package init(losses: [Float], predictions: [Int], labels: [UInt8], classCount: Int) {
    count = labels.count
    var total = 0.0
    for loss in losses { total += Double(loss) }
    nonFiniteLosses = losses.reduce(0) { $0 + ($1.isFinite ? 0 : 1) }
    loss = count > 0 ? total / Double(count) : 0
    var confusion = [[Int]](repeating: [Int](repeating: 0, count: classCount), count: classCount)
    for (label, prediction) in zip(labels, predictions) { confusion[Int(label)][prediction] += 1 }
    let correct = (0..<classCount).reduce(0) { $0 + confusion[$1][$1] }
    accuracy = count > 0 ? Double(correct) / Double(count) : 0
    classes = (0..<classCount).map { c in
      let truePositives = Double(confusion[c][c])
      let predicted = Double((0..<classCount).reduce(0) { $0 + confusion[$1][c] })
      let actual = confusion[c].reduce(0, +)
      let precision = predicted > 0 ? truePositives / predicted : 0
      let recall = actual > 0 ? truePositives / Double(actual) : 0
      let f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0
      return ClassMetrics(precision: precision, recall: recall, f1: f1, support: actual)
    }
    self.confusion = confusion
  }
}
