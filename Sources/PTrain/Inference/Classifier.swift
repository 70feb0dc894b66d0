/// A trained model that classifies images: a checkpoint's model, weights, normalisation
/// and class names, run on the workers of a `Trainer`. Images are prepared as training
/// prepared them: decoded (PNG or JPEG, see `ImageDecoder`), converted to the model's
/// channels, resized to its input (see `ImageResizing`) and standardised with the
/// checkpoint's normalisation.
///
/// ```swift
/// let classifier = try Classifier(checkpoint: "mine.safetensors")
/// let prediction = try classifier.predict(imageAt: "cat.png")
/// print(prediction.top(3))   // [(name: "cat", probability: 0.91), …]
/// ```
public struct Classifier {
  public let checkpoint: Checkpoint
  /// The name of each class, by class number (see `Checkpoint.classNames`).
  public let classNames: [String]
  let trainer: Trainer

  /// One image's probabilities, one per class, with the class names to read them by.
  public struct Prediction: Sendable {
    public let probabilities: [Float]
    public let classNames: [String]

    /// The `k` most probable classes, most probable first (ties: the lower number).
    /// Cost: O(classes · log classes).
    public func top(_ k: Int) -> [(name: String, probability: Float)] {
      let ranked = probabilities.indices.sorted {
        probabilities[$0] > probabilities[$1] || (probabilities[$0] == probabilities[$1] && $0 < $1)
      }
      return ranked.prefix(max(k, 0)).map { (classNames[$0], probabilities[$0]) }
    }
  }

  /// The model's input: the shape images are converted and resized to.
  public var input: ImageShape { checkpoint.model.input }

  /// Loads the checkpoint at `path` onto `threads` workers. Throws one line naming the
  /// file when it cannot be read or holds no usable model.
  public init(checkpoint path: String, threads: Int = 1, topology: Topology? = nil) throws {
    try self.init(try Checkpoint(path: path), threads: threads, topology: topology)
  }

  /// Runs `checkpoint` on `threads` workers.
  public init(_ checkpoint: Checkpoint, threads: Int = 1, topology: Topology? = nil) throws {
    self.checkpoint = checkpoint
    classNames = checkpoint.classNames
    trainer = try Trainer(
      options: TrainingOptions(threads: threads, epochs: 1), model: checkpoint.model,
      normalization: checkpoint.normalization, topology: topology)
    try trainer.loadParameters(
      checkpoint.parameters, state: checkpoint.runningStatistics, from: checkpoint.plan,
      layers: Set(checkpoint.plan.parameterLayers.map(\.index)))
  }

  /// The predictions of images already at the model's input shape, `pixels` holding
  /// their bytes image after image (height × width × channels each). Cost: the forward
  /// FLOP per image, spread over the workers.
  public func predict(pixels: [UInt8]) -> [Prediction] {
    let classes = checkpoint.plan.classes
    let values = trainer.probabilities(ofImages: pixels)
    return stride(from: 0, to: values.count, by: classes).map {
      Prediction(probabilities: Array(values[$0..<($0 + classes)]), classNames: classNames)
    }
  }

  /// The prediction of the PNG or JPEG file at `path`. Throws one line naming the file
  /// when it cannot be read or decoded.
  public func predict(imageAt path: String) throws -> Prediction {
    try predict(imagesAt: [path])[0]
  }

  /// The predictions of the PNG or JPEG files at `paths`, in their order, in one batch
  /// over the workers. Cost: one decode per file and the forward FLOP per image.
  public func predict(imagesAt paths: [String]) throws -> [Prediction] {
    predict(pixels: try paths.flatMap(input(ofImageAt:)))
  }

  /// The PNG or JPEG file at `path` as the model takes it: decoded, converted to its
  /// channels and resized to its input (not yet standardised). Cost: one decode.
  public func input(ofImageAt path: String) throws -> [UInt8] {
    var pixels = [UInt8](repeating: 0, count: input.count)
    try pixels.withUnsafeMutableBufferPointer {
      try ImageDecoder.load(path: path, into: $0.baseAddress!, shape: input)
    }
    return pixels
  }

  /// `images` (gray, one byte per pixel, of `shape`, image after image, as an IDX file
  /// holds them) converted to the model's channels and resized to its input.
  /// Cost: O(pixels), plus the resize when the sizes differ.
  public func fitGrayImages(_ images: [UInt8], shape: ImageShape) -> [UInt8] {
    precondition(shape.channels == 1 && images.count % shape.count == 0, "fitGrayImages: whole gray images")
    let count = images.count / shape.count
    let spread = ImageShape(height: shape.height, width: shape.width, channels: input.channels)
    var result = [UInt8](repeating: 0, count: count * input.count)
    var expanded = [UInt8](repeating: 0, count: spread.count)
    for image in 0..<count {
      for pixel in 0..<shape.count {
        for channel in 0..<input.channels {
          expanded[pixel * input.channels + channel] = images[image * shape.count + pixel]
        }
      }
      expanded.withUnsafeBufferPointer { source in
        result.withUnsafeMutableBufferPointer {
          ImageResizing.resize(
            source.baseAddress!, from: spread, into: $0.baseAddress! + image * input.count, to: input)
        }
      }
    }
    return result
  }
}
