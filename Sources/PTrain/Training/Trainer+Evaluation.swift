/// Evaluating the trainer's model on a data set, on its workers.
extension Trainer {
  /// Loss, accuracy, per-class metrics and confusion matrix on `data`, computed in
  /// parallel with the BatchNorm running statistics and without dropout; the result does
  /// not depend on the thread count. The images are read (from their files, or copied
  /// from memory) a chunk of `stagedBytes` at a time, one fan-out each; a file that has
  /// changed throws. Cost: the forward FLOP per image.
  public func evaluate(_ data: LabeledImages) throws -> Evaluation {
    var losses = [Float](repeating: 0, count: data.count)
    var predictions = [Int](repeating: 0, count: data.count)
    let imageBytes = data.shape.count
    let chunk = max(1, stagedBytes / imageBytes)
    var staged = [UInt8](repeating: 0, count: min(chunk, data.count) * imageBytes)
    for start in stride(from: 0, to: data.count, by: chunk) {
      let images = start..<min(start + chunk, data.count)
      try staged.withUnsafeMutableBufferPointer { try data.copyImages(images, into: $0.baseAddress!) }
      evaluate(data, images: images, bytes: staged, losses: &losses, predictions: &predictions)
    }
    return Evaluation(losses: losses, predictions: predictions, labels: data.labels, classCount: plan.classes)
  }

  /// Evaluates `data`'s images at `images`, whose bytes start `bytes`, into their
  /// elements of `losses` and `predictions`, in one fan-out. Cost: the forward FLOP per
  /// image.
  private func evaluate(
    _ data: LabeledImages, images: Range<Int>, bytes: [UInt8], losses: inout [Float], predictions: inout [Int]
  ) {
    let block = 64
    let workers = pool.count
    nonisolated(unsafe) let params = parameters.base
    nonisolated(unsafe) let runningState = UnsafePointer(runningStatistics.base)
    let imageBytes = data.shape.count
    bytes.withUnsafeBufferPointer { pixels in
      losses.withUnsafeMutableBufferPointer { losses in
        predictions.withUnsafeMutableBufferPointer { predictions in
          // Parameters and images are only read; each image's loss and prediction are
          // written by the one worker that evaluates it.
          nonisolated(unsafe) let (pixels, losses, predictions) = (pixels, losses, predictions)
          pool.run { worker in
            let replica = replicas[worker]
            prepared.update(from: params, part: worker, of: workers)
            pool.barrier.wait()
            for blockStart in stride(from: worker * block, to: images.count, by: workers * block) {
              for offset in blockStart..<min(blockStart + block, images.count) {
                let index = images.lowerBound + offset
                let result = replica.evaluate(
                  image: pixels.baseAddress! + offset * imageBytes, label: Int(data.labels[index]), parameters: params,
                  state: runningState)
                losses[index] = result.loss
                predictions[index] = result.prediction
              }
            }
          }
        }
      }
    }
  }
}
