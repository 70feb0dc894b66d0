import ArgumentParser
import Foundation
import PTrain

/// `ptrain predict`: the most probable classes of new images, by a checkpoint.
struct Predict: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "predict",
    abstract: "Print the most probable classes of images, by a checkpoint.",
    discussion: """
      Each IMAGE is a PNG or JPEG file, a directory (its .png, .jpg and .jpeg files, below it \
      too, in sorted order) or an IDX image file (each image in it, named FILE[i]). Images are \
      prepared as training prepared them: converted to the model's channels (Pillow's \
      convert rule), resized to its input with Pillow's bilinear filter, and standardised \
      with the checkpoint's normalisation. No training data is needed. A state_dict PyTorch \
      saved names neither its model nor its normalisation: give them with --model and --normalize.
      """)

  @Argument(help: ArgumentHelp("The .safetensors checkpoint to classify with.", valueName: "CHECKPOINT"))
  var checkpoint: String

  @Argument(help: ArgumentHelp("Images, directories of images, or IDX image files.", valueName: "IMAGE"))
  var images: [String]

  @Option(parsing: .unconditional, help: "How many classes to print per image, most probable first.")
  var top = 3

  @Option(
    parsing: .unconditional,
    help: "Worker threads. (default: the physical cores the process may use, split among the MPI ranks on a node)")
  var threads: Int?

  @OptionGroup var placement: PlacementOptions

  @Option(
    help: ArgumentHelp(
      StoredNormalizationOption.modelHelp, valueName: "NAME|SPEC"))
  var model: String?

  @OptionGroup var stored: StoredNormalizationOption

  @Flag(help: "Print one JSON object: every image's probability of every class.")
  var json = false

  /// One image to classify: where it comes from, and its name in the output.
  struct Source {
    let name: String
    let path: String
    /// The image's index in an IDX file; nil for an image file.
    let idxIndex: Int?
  }

  /// The `--json` output.
  struct Output: Encodable {
    let checkpoint: String
    let classNames: [String]
    let images: [Image]

    struct Image: Encodable {
      let image: String
      let top: [Ranked]
      let probabilities: [Float]
    }

    struct Ranked: Encodable {
      let className: String
      let probability: Float
    }
  }

  func validate() throws {
    guard top >= 1 else { throw ValidationError("--top must be at least 1, got \(top)") }
    guard !images.isEmpty else { throw ValidationError("give at least one IMAGE, directory or IDX file") }
  }

  func run() throws {
    try CPUSupport.requireVectorUnits()
    let topology = try placement.topology()
    let classifier = try Classifier(
      try stored.load(checkpoint, modelText: model), threads: try threadCount(threads, topology: topology),
      topology: topology)
    var idxFiles: [String: IDXFile] = [:]
    let sources = try images.flatMap { try expand($0, idxFiles: &idxFiles) }
    guard !sources.isEmpty else { throw PTrainError("no image found in \(images.joined(separator: ", "))") }
    let pixels = try load(sources, for: classifier, idxFiles: idxFiles)
    let predictions = classifier.predict(pixels: pixels)
    let shown = min(top, classifier.classNames.count)
    if json {
      try printJSON(
        Output(
          checkpoint: checkpoint, classNames: classifier.classNames,
          images: zip(sources, predictions).map { source, prediction in
            Output.Image(
              image: source.name,
              top: prediction.top(shown).map { Output.Ranked(className: $0.name, probability: $0.probability) },
              probabilities: prediction.probabilities)
          }))
      return
    }
    for (source, prediction) in zip(sources, predictions) {
      let ranked = prediction.top(shown).map { "\($0.name) " + String(format: "%.1f%%", 100 * $0.probability) }
      try Terminal.output("\(source.name): \(ranked.joined(separator: ", "))")
    }
  }

  /// The images an argument names: a directory's image files (sorted, below it too), an
  /// IDX file's images (the file read once, into `idxFiles`), or the file itself.
  func expand(_ path: String, idxFiles: inout [String: IDXFile]) throws -> [Source] {
    var info = stat()
    guard stat(path, &info) == 0 else { throw PTrainError("\(path): \(String(cString: strerror(errno)))") }
    if (info.st_mode & S_IFMT) == S_IFDIR {
      let files = try imageFiles(below: path)
      guard !files.isEmpty else { throw PTrainError("\(path): holds no .png, .jpg or .jpeg file") }
      return files.map { Source(name: $0, path: $0, idxIndex: nil) }
    }
    if try isIDX(path) {
      let file = try idxFiles[path] ?? IDXFile.read(path: path, dimensionCount: 3)
      idxFiles[path] = file
      return (0..<file.dimensions[0]).map { Source(name: "\(path)[\($0)]", path: path, idxIndex: $0) }
    }
    return [Source(name: path, path: path, idxIndex: nil)]
  }

  /// The image files below `directory`, sorted by path (code point order).
  private func imageFiles(below directory: String) throws -> [String] {
    guard let walker = FileManager.default.enumerator(atPath: directory) else {
      throw PTrainError("\(directory): cannot be read")
    }
    var files: [String] = []
    while let relative = walker.nextObject() as? String {
      let name = (relative as NSString).lastPathComponent
      guard ImageDecoder.hasImageExtension(name) else { continue }
      files.append(directory + "/" + relative)
    }
    return files.sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
  }

  /// Whether `path` starts as an IDX image file does (0, 0, type 8 for bytes, 3
  /// dimensions), or as gzip does (IDX files are often gzipped; images never are).
  private func isIDX(_ path: String) throws -> Bool {
    guard let handle = FileHandle(forReadingAtPath: path) else {
      throw PTrainError("\(path): \(String(cString: strerror(errno)))")
    }
    defer { try? handle.close() }
    let start = Array((try? handle.read(upToCount: 4)) ?? Data())
    return start == [0, 0, 8, 3] || start.starts(with: [0x1F, 0x8B])
  }

  /// Every source's bytes at the classifier's input, decoded and resized.
  private func load(_ sources: [Source], for classifier: Classifier, idxFiles: [String: IDXFile]) throws -> [UInt8] {
    let input = classifier.input
    var pixels = [UInt8]()
    pixels.reserveCapacity(sources.count * input.count)
    for source in sources {
      if let index = source.idxIndex {
        let file = idxFiles[source.path]!  // read by `expand`
        let shape = ImageShape(height: file.dimensions[1], width: file.dimensions[2], channels: 1)
        pixels += classifier.fitGrayImages(
          Array(file.bytes[(index * shape.count)..<((index + 1) * shape.count)]), shape: shape)
      } else {
        pixels += try classifier.input(ofImageAt: source.path)
      }
    }
    return pixels
  }
}
