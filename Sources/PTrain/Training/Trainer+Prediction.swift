/// Class probabilities of unlabelled images, on the trainer's workers.
extension Trainer {
  /// The softmax probabilities of the images whose bytes are `pixels` (each of the
  /// model's input shape, image after image): `classes` values per image, image after
  /// image, in evaluation mode (BatchNorm's running statistics, no dropout). Each image's
  /// values do not depend on the thread count. Cost: the forward FLOP per image.
  public func probabilities(ofImages pixels: [UInt8]) -> [Float] {
    let imageBytes = plan.input.count
    precondition(pixels.count % imageBytes == 0, "probabilities: \(pixels.count) bytes are not whole images")
    let count = pixels.count / imageBytes
    let classes = plan.classes
    var result = [Float](repeating: 0, count: count * classes)
    guard count > 0 else { return result }
    let workers = pool.count
    nonisolated(unsafe) let params = parameters.base
    nonisolated(unsafe) let runningState = UnsafePointer(runningStatistics.base)
    pixels.withUnsafeBufferPointer { pixels in
      result.withUnsafeMutableBufferPointer { result in
        // Parameters and images are only read; each image's values are written by the one
        // worker that runs it.
        nonisolated(unsafe) let (pixels, result) = (pixels, result)
        pool.run { worker in
          let replica = replicas[worker]
          prepared.update(from: params, part: worker, of: workers)
          pool.barrier.wait()
          for index in stride(from: worker, to: count, by: workers) {
            let logits = replica.forward(
              image: pixels.baseAddress! + index * imageBytes, parameters: params, state: runningState)
            _ = softmax(logits: logits.baseAddress!, classes: classes, into: result.baseAddress! + index * classes)
          }
        }
      }
    }
    return result
  }
}
