extension Trainer {
  /// Runs the current epoch from step `stepsIntoEpoch`: in one fan-out for images in
  /// memory, else a segment of steps at a time (see `stagedBytes`), each worker running
  /// its part of every step (`StepWorker`). Returns whether it reached the end; it stops
  /// early on `requestStop()` or a non-finite value, and throws when a file the images are
  /// kept in has changed.
  func trainEpoch(
    _ data: LabeledImages, order: [Int32], target: Int, onEvent: @Sendable (TrainingEvent) -> Void
  ) throws -> Bool {
    let batch = options.batchSize
    let imageBytes = data.shape.count
    let epoch = EpochSteps(trainer: self, images: data.count, imageBytes: imageBytes, target: target)
    flags[0] = 0
    // Images in memory are read where they are, in one fan-out. Images kept in their files
    // are read ahead a segment of steps at a time, in batch order, into `staged`.
    let inMemory = data.bytesInMemory
    let segmentSteps = inMemory != nil ? epoch.steps : max(1, stagedBytes / (batch * imageBytes))
    var staged = [UInt8](repeating: 0, count: inMemory != nil ? 0 : min(segmentSteps * batch, data.count) * imageBytes)
    var segmentStart = stepsIntoEpoch
    try withoutActuallyEscaping(onEvent) { onEvent in
      while segmentStart < epoch.steps && flags[0] == 0 && failure == nil {
        let segment = segmentStart..<min(segmentStart + segmentSteps, epoch.steps)
        let firstStaged = segment.lowerBound * batch
        if inMemory == nil {
          let readStart = ContinuousClock().now
          try staged.withUnsafeMutableBufferPointer { staged in
            try data.copyImages(
              order[firstStaged..<min(segment.upperBound * batch, data.count)], into: staged.baseAddress!)
          }
          profile.data += (ContinuousClock().now - readStart).seconds
        }
        (inMemory ?? staged).withUnsafeBufferPointer { pixels in
          data.labels.withUnsafeBufferPointer { labels in
            order.withUnsafeBufferPointer { order in
              // Shared under the step protocol (see `EpochSteps`); the images, labels and
              // order are only read.
              nonisolated(unsafe) let (pixels, labels, order) = (pixels, labels, order)
              pool.run { worker in
                var part = StepWorker(
                  trainer: self, epoch: epoch, worker: worker, pixels: pixels, labels: labels, order: order,
                  firstStaged: firstStaged, inMemory: inMemory != nil, segment: segment,
                  onEvent: onEvent)
                for step in segment {
                  guard part.run(step: step) else { break }
                }
              }
            }
          }
        }
        segmentStart = segment.upperBound
      }
    }
    return stepsIntoEpoch == epoch.steps
  }
}
