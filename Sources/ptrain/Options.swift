import ArgumentParser
import Foundation
import PTrain

/// The datasets `--dataset` names.
enum DatasetName: String, ExpressibleByArgument, CaseIterable {
  case mnist
  case fashionMNIST = "fashion-mnist"
}

/// Where the images come from: `--dataset`, `--data`, `--train-limit`, and for image
/// folders `--image-size` and `--skip-bad-images`.
struct DataOptions: ParsableArguments {
  @Option(help: "mnist (bundled) or fashion-mnist (from Debian's dataset-fashion-mnist). (default: mnist)")
  var dataset: DatasetName?

  @Option(
    help: ArgumentHelp(
      "Read the data from DIR: the four standard IDX files (raw or .gz, any image size), CIFAR-10's binary files, or an image folder: DIR/train/CLASS/*.png|jpg|jpeg and, optionally, DIR/test/CLASS/… .",
      valueName: "DIR"))
  var data: String?

  @Option(
    parsing: .unconditional,
    help: ArgumentHelp(
      "Train on the first N training images only (of an image folder, whose files are ordered by class: N spread evenly over it, so every class is sampled).",
      valueName: "N"))
  var trainLimit: Int?

  @Option(
    help: ArgumentHelp(
      "Resize an image folder's images to HxW (Pillow's bilinear filter, antialiased). (default: the most common size among its training images; a checkpoint's own size)",
      valueName: "HxW"))
  var imageSize: String?

  @Flag(help: "Leave out, and count, an image folder's images that cannot be read or decoded, instead of stopping.")
  var skipBadImages = false

  /// The flags a resumed run must repeat to find the same images: `--skip-bad-images`.
  var resumeFlags: [String] { skipBadImages ? ["--skip-bad-images"] : [] }

  /// Loads the chosen dataset, or the one `metadata` (a checkpoint's) names when none
  /// was chosen, or the bundled MNIST. An image folder is decoded on `threads` threads
  /// into `shape` (a model's input) when given, else into `--image-size` or the
  /// checkpoint's `image_size`, with `channels` when given.
  func load(
    defaultsFrom metadata: [String: String] = [:], of checkpoint: String = "the checkpoint", threads: Int = 1,
    shape: ImageShape? = nil, channels: Int? = nil, testOnly: Bool = false
  ) throws -> Dataset {
    var folder = ImageFolderOptions(skipBadImages: skipBadImages, threads: threads)
    folder.channels = shape?.channels ?? channels
    if let imageSize {
      folder.size = try usage { try ImageSize(parsing: imageSize) }
      if let shape, folder.size != ImageSize(height: shape.height, width: shape.width) {
        throw ValidationError(
          "--image-size \(imageSize) differs from the model's input, \(shape.height)x\(shape.width)")
      }
    } else if let shape {
      folder.size = ImageSize(height: shape.height, width: shape.width)
    } else if let saved = metadata["image_size"] {
      do { folder.size = try ImageSize(parsing: saved) } catch let error as PTrainError {
        throw PTrainError("\(checkpoint): __metadata__.image_size: \(error)")
      }
    }
    if Terminal.stderrIsTTY {
      folder.progress = { decoded, total in
        Terminal.progress("\rptrain: decoding images \(decoded)/\(total)" + (decoded == total ? "\n" : ""))
      }
    }
    let dataset = try loadDataset(defaultsFrom: metadata, of: checkpoint, imageFolder: folder, testOnly: testOnly)
    if let report = dataset.imageFolder {
      if let first = report.skipped.first {
        Terminal.warn(
          "left out \(report.skipped.count) image(s) that could not be read (--skip-bad-images); the first: \(first)")
      }
      if let first = report.ignored.first {
        Terminal.warn(
          "ignored \(report.ignored.count) file(s) that are not .png, .jpg or .jpeg images, such as \(first)")
      }
    }
    return dataset
  }

  private func loadDataset(
    defaultsFrom metadata: [String: String], of checkpoint: String, imageFolder: ImageFolderOptions, testOnly: Bool
  ) throws -> Dataset {
    if let data {
      return try Dataset.load(
        directory: data, name: (data as NSString).lastPathComponent, imageFolder: imageFolder, testOnly: testOnly)
    }
    if dataset == nil, let directory = metadata["data_directory"] {
      return try Dataset.load(
        directory: directory, name: metadata["dataset"] ?? directory, imageFolder: imageFolder, testOnly: testOnly)
    }
    if dataset == nil, let name = metadata["dataset"], DatasetName(rawValue: name) == nil {
      let known = DatasetName.allCases.map(\.rawValue).joined(separator: ", ")
      throw PTrainError(
        "\(checkpoint) names the dataset '\(name)', which is none of \(known), and no data directory; pass --data DIR")
    }
    switch dataset ?? metadata["dataset"].flatMap(DatasetName.init(rawValue:)) ?? .mnist {
    case .mnist: return try Dataset.bundledMNIST()
    case .fashionMNIST:
      do { return try Dataset.fashionMNIST() } catch let error as PTrainError
        where !FileManager.default.fileExists(atPath: Dataset.fashionMNISTDirectory)
      {
        throw PTrainError("\(error) (--data DIR)")  // the copy's directory, in the CLI's terms
      }
    }
  }

  /// The training images, cut to `--train-limit` when given.
  func trainingImages(of dataset: Dataset) throws -> LabeledImages {
    guard let trainLimit else { return dataset.train }
    guard trainLimit >= 1 else { throw ValidationError("--train-limit must be at least 1, got \(trainLimit)") }
    guard trainLimit <= dataset.train.count else {
      throw ValidationError(
        "--train-limit \(trainLimit) is larger than the \(dataset.train.count) training images of \(dataset.name)")
    }
    return limited(dataset, to: trainLimit)
  }

  /// `count` of `dataset`'s training images: the first ones, or for an image folder
  /// (ordered by class) ones spread evenly over it, so that every class is sampled.
  func limited(_ dataset: Dataset, to count: Int) -> LabeledImages {
    dataset.imageFolder == nil ? dataset.train.prefix(count) : dataset.train.spread(count)
  }

  /// The training images a resumed run continues on: `--train-limit` when given, else
  /// as many as the checkpoint `path` (with `metadata`) was trained on.
  func resumedTrainingImages(of dataset: Dataset, checkpoint path: String, metadata: [String: String]) throws
    -> LabeledImages
  {
    guard trainLimit == nil, let saved = metadata["train_images"] else { return try trainingImages(of: dataset) }
    guard let count = Int(saved), count >= 1 else {
      throw PTrainError("\(path): __metadata__.train_images is not a positive integer")
    }
    guard count <= dataset.train.count else {
      throw PTrainError(
        "\(path) was trained on \(count) images, but \(dataset.name) has only \(dataset.train.count) training images; resume on the same data"
      )
    }
    return limited(dataset, to: count)
  }
}

/// `path` made absolute, with symbolic links, `.` and `..` resolved where it exists.
func absolutePath(_ path: String) -> String {
  if let resolved = realpath(path, nil) {
    defer { free(resolved) }
    return String(cString: resolved)
  }
  let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
  return (absolute as NSString).standardizingPath
}

/// The worker count: `given`, or `coresPerProcess` by default; a usage error (exit 64)
/// unless it lies from 1 to `TrainingOptions.maximumThreads`.
func threadCount(_ given: Int?, topology: Topology) throws -> Int {
  let threads = given ?? coresPerProcess(topology)
  try usage { try TrainingOptions(threads: threads).validate() }
  return threads
}

/// The cores this process's workers take by default: the physical cores it may use,
/// shared evenly among the MPI ranks on its node (Open MPI's node-local size), unless
/// mpirun or a scheduler bound each rank to CPUs of its own, which are then its share.
/// At least 1.
func coresPerProcess(_ topology: Topology) -> Int {
  let sharing = topology.isRestricted ? 1 : job.localSize
  return max(1, topology.physicalCores / sharing)
}

/// `--cpus LIST`: the CPUs ptrain may use, within those the process is allowed.
struct PlacementOptions: ParsableArguments {
  @Option(
    help: ArgumentHelp(
      "Use only these CPUs, for example 0-7,16-23; each must be one the process may use (taskset, numactl, Slurm, mpirun). (default: every allowed CPU)",
      valueName: "LIST"))
  var cpus: String?

  /// The machine's topology with the allowed CPUs, narrowed to `--cpus`; a bad list or
  /// a CPU outside the allowed set is a usage error.
  func topology() throws -> Topology {
    guard let cpus else { return try Topology() }
    guard let list = Topology.parseCPUs(cpus) else {
      throw ValidationError("--cpus takes CPU numbers and ranges separated by commas, like 0-7,16; got '\(cpus)'")
    }
    return try usage { try Topology(cpus: list) }
  }
}

/// `--model NAME|SPEC`: a built-in model or a model text.
struct ModelOptions: ParsableArguments {
  @Option(
    help: ArgumentHelp(
      "A built-in model (mnist-cnn, fashion-cnn, cifar-cnn, resnet-20, which takes any image shape it fits; see `ptrain summary --list`) or a model text such as 'conv 32 3x3 same, batchnorm, relu, maxpool 2, flatten, dense 10'. (default: mnist-cnn)",
      valueName: "NAME|SPEC"))
  var model: String?

  /// The chosen model (mnist-cnn by default) on images of shape `input`, which a text
  /// without an `input` clause takes; a text's own input clause must agree. A usage error
  /// (exit 64) for a bad name or text.
  func definition(input: ImageShape?) throws -> ModelDefinition {
    let definition = try usage { try Self.definition(model ?? "mnist-cnn", input: input) }
    if let input, definition.input != input {
      throw ValidationError("the model's input is \(definition.input) but the data's images are \(input)")
    }
    return definition
  }

  /// The input the chosen model requires whatever the data: a built-in model's that
  /// takes one shape only, or a model text's `input` clause; nil when the data decides.
  /// An image folder is decoded to it.
  var requiredInput: ImageShape? {
    let text = model ?? "mnist-cnn"
    if ModelDefinition.builtIn.contains(where: { $0.name == text }) {
      return ModelDefinition.inputAgnostic.contains(text) ? nil : try? ModelDefinition(named: text).input
    }
    return try? ModelDefinition(parsing: text).input
  }

  /// `text` as a built-in name or a model text.
  static func definition(_ text: String, input: ImageShape?) throws -> ModelDefinition {
    if ModelDefinition.builtIn.contains(where: { $0.name == text }) {
      return try ModelDefinition(named: text, input: input)
    }
    guard text.contains(" ") || text.contains(",") else {
      let names = ModelDefinition.builtIn.map(\.name).joined(separator: ", ")
      throw PTrainError("--model \(text): not a built-in model (\(names)) nor a model text")
    }
    do { return try ModelDefinition(parsing: text, input: input) } catch let error as PTrainError {
      throw PTrainError("--model: \(error)")
    }
  }
}

/// `--augment` and `--normalize`.
struct InputOptions: ParsableArguments {
  @Option(
    help: ArgumentHelp(
      "Random training-image changes, comma-separated: crop:P (a random crop after padding P pixels), flip (a random horizontal flip), erase or erase:P (with probability P, default 0.5, a random rectangle of 2–33% of the image set to its mean, as torchvision's RandomErasing), e.g. crop:4,flip,erase. Drawn per seed, epoch and image, so no thread count changes a bit. (default: none)",
      valueName: "LIST"))
  var augment: String?

  @Option(
    help: ArgumentHelp(
      "The per-channel mean and standard deviation of pixel/255 that standardise the images, as MEAN,STD (or M1,M2,M3,S1,S2,S3 for RGB). (default: the training set's, rounded to 4 decimals)",
      valueName: "MEAN,STD"))
  var normalize: String?

  /// `--augment` parsed; a usage error when malformed.
  func augmentation() throws -> Augmentation {
    try usage { try augment.map(Augmentation.init(parsing:)) ?? .none }
  }

  /// `--normalize` for `channels`, or `dataset`'s training statistics.
  func normalization(channels: Int, dataset: Dataset) throws -> Normalization {
    guard let normalize else { return try Normalization(of: dataset.train) }
    return try usage { try Normalization(parsing: normalize, channels: channels) }
  }
}

/// `--save` and `--checkpoint-every`.
struct CheckpointOptions: ParsableArguments {
  @Option(
    help: ArgumentHelp(
      "Write a .safetensors checkpoint to PATH at the end, on Ctrl-C, and with --checkpoint-every. (default: with --resume, the resumed file)",
      valueName: "PATH"))
  var save: String?

  @Option(
    parsing: .unconditional, help: ArgumentHelp("Also save every N optimizer steps (needs --save).", valueName: "N"))
  var checkpointEvery: Int?

  /// The flags a resumed run should repeat: `--checkpoint-every`, when it was given.
  var resumeFlags: [String] { checkpointEvery.map { ["--checkpoint-every", String($0)] } ?? [] }

  /// Refuses settings that cannot work before any training time is spent: a bad
  /// `--checkpoint-every`, or a `--save` path that could not be written (see
  /// `checkWritable`). Called by the commands, not by the parser, so that a resume can
  /// first make its checkpoint the `--save` path.
  func checkPaths() throws {
    if let checkpointEvery {
      guard checkpointEvery >= 1 else {
        throw ValidationError("--checkpoint-every must be at least 1, got \(checkpointEvery)")
      }
      guard save != nil else { throw ValidationError("--checkpoint-every needs --save PATH to know where to write") }
    }
    if let save { try checkOutputPath(save, flag: "--save") }
  }
}

/// A usage error (exit 64) naming `flag` unless a file can be written at `path`.
func checkOutputPath(_ path: String, flag: String) throws {
  do { try checkWritable(path) } catch let error as PTrainError { throw ValidationError("\(flag) \(error)") }
}

/// `--json`, `--quiet` and `--profile`.
struct OutputOptions: ParsableArguments {
  @Flag(help: "Print one JSON summary on stdout at the end.")
  var json = false

  @Flag(help: "No progress output.")
  var quiet = false

  @Flag(help: "At the end, print where training time went: compute, reduce, optimizer, data, barrier.")
  var profile = false

  @Option(
    help: ArgumentHelp(
      "Write TensorBoard event files to DIR (created, with its parents, when missing): scalars every --log-every steps and per epoch, parameter histograms per epoch, and a summary of the run. A resumed run keeps logging there.",
      valueName: "DIR"))
  var logdir: String?

  @Option(parsing: .unconditional, help: "Global steps between the scalars logged with --logdir. (default: 50)")
  var logEvery: Int?

  /// The steps between logged scalars.
  var logInterval: Int { logEvery ?? 50 }

  @Option(
    help: ArgumentHelp(
      "At the end, write one self-contained HTML report to PATH: loss and accuracy curves, confusion matrix, per-class metrics, throughput and settings.",
      valueName: "PATH"))
  var report: String?

  /// Creates a missing `--logdir` (with its parents); throws a usage error for a bad
  /// `--log-every`, a `--logdir` that cannot be created or is not a writable directory, or a `--report` path that cannot be written; before training.
  func checkLogging() throws {
    if let logEvery {
      guard logEvery >= 1 else { throw ValidationError("--log-every must be at least 1, got \(logEvery)") }
      guard logdir != nil else { throw ValidationError("--log-every needs --logdir DIR, where the scalars go") }
    }
    if let logdir {
      var info = stat()
      if stat(logdir, &info) != 0 && errno == ENOENT {
        // Created with its parents, as TensorBoard's writers do.
        do { try FileManager.default.createDirectory(atPath: logdir, withIntermediateDirectories: true) } catch {
          throw ValidationError("--logdir \(logdir): cannot be created: \(error.localizedDescription)")
        }
      }
      guard stat(logdir, &info) == 0 else {
        throw ValidationError("--logdir \(logdir): \(String(cString: strerror(errno)))")
      }
      guard info.st_mode & S_IFMT == S_IFDIR else { throw ValidationError("--logdir \(logdir): not a directory") }
      // A file must be creatable there (a read-only or full filesystem refuses even root).
      try checkOutputPath((logdir as NSString).appendingPathComponent("events.out.tfevents.probe"), flag: "--logdir")
    }
    if let report { try checkOutputPath(report, flag: "--report") }
  }

  /// The flags a resumed run keeps: where it logs.
  var resumeFlags: [String] {
    logdir.map { ["--logdir", $0] + (logEvery.map { ["--log-every", String($0)] } ?? []) } ?? []
  }
}
