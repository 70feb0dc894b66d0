import ArgumentParser
import Foundation
import PTrain

/// `ptrain gradient`: one training step's gradient and the parameters it starts from, in
/// PyTorch's names, so that another framework can compute the same step and compare.
struct GradientCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "gradient",
    abstract: "Write one training step's gradient and its starting parameters, to check against another framework.",
    discussion: """
      The batch is the first --batch-size training images, in file order; the parameters are \
      the initial ones --seed draws. The gradient is that of the batch's mean cross-entropy \
      loss (PyTorch's CrossEntropyLoss), with BatchNorm's batch statistics, as a training step \
      computes it on the workers. The .safetensors file holds NAME (each parameter, as a \
      checkpoint names it), grad.NAME (its gradient), images (the batch's bytes as F32, \
      N x H x W x C) and labels (I64), with the model text and the normalisation in \
      __metadata__. Dropout's masks are ptrain's own, so compare models without dropout. \
      tools/torch-gradient-check compares random models with PyTorch this way.
      """)

  @OptionGroup var model: ModelOptions
  @OptionGroup var placement: PlacementOptions
  @OptionGroup var data: DataOptions

  @Option(
    parsing: .unconditional,
    help: "Worker threads. (default: the physical cores the process may use, split among the MPI ranks on a node)")
  var threads: Int?

  @Option(parsing: .unconditional, help: "Images in the batch: the first N training images.")
  var batchSize = 32

  @Option(parsing: .unconditional, help: "Seeds the initial parameters.")
  var seed: UInt64 = 1

  @Option(
    help: ArgumentHelp(
      "The per-channel mean and standard deviation, as train takes them. (default: the training set's)",
      valueName: "MEAN,STD"))
  var normalize: String?

  @Option(name: .shortAndLong, help: ArgumentHelp("Where to write the .safetensors file.", valueName: "PATH"))
  var output: String

  func run() throws {
    try CPUSupport.requireVectorUnits()
    try checkOutputPath(output, flag: "--output")
    let topology = try placement.topology()
    let dataset = try data.load()
    try refuseOverwriting(inputs: dataInputs(dataset), outputs: [NamedPath(role: "--output", path: output)])
    let definition = try model.definition(input: dataset.train.shape)
    guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1, got \(batchSize)") }
    let batch = try data.trainingImages(of: dataset).prefix(min(batchSize, dataset.train.count))
    var inputs = InputOptions()
    inputs.normalize = normalize
    let normalization = try inputs.normalization(channels: definition.input.channels, dataset: dataset)
    let options = TrainingOptions(
      threads: try threadCount(threads, topology: topology), epochs: 1, batchSize: batch.count, seed: seed)
    try usage { try options.validate() }
    let trainer = try Trainer(options: options, model: definition, normalization: normalization, topology: topology)
    let initial = trainer.parameterValues
    nonisolated(unsafe) var gradient: [Float] = []
    trainer.observeGradient = { sum, images in
      if gradient.isEmpty { gradient = sum.map { $0 / Float(images) } }
    }
    do { try trainer.train(batch) } catch let error as PTrainError {
      guard !gradient.isEmpty else { throw error }  // the step's update failed; its gradient is what was asked
    }
    let plan = trainer.plan
    var tensors = initial.withUnsafeBufferPointer { plan.torchTensors($0.baseAddress!) }
    tensors += gradient.withUnsafeBufferPointer { plan.torchTensors($0.baseAddress!, prefix: "grad.") }
    let shape = definition.input
    tensors.append(
      ("images", [batch.count, shape.height, shape.width, shape.channels], try batch.pixels.map(Float.init)))
    let labels = ("labels", [batch.count], batch.labels.map(Int64.init))
    let metadata = [
      "model_text": definition.text, "normalize": normalization.description, "seed": String(seed),
      "gradient": "of the batch's mean cross-entropy loss",
    ]
    try writeFileAtomically(SafeTensors.encode(tensors: tensors, integers: [labels], metadata: metadata), to: output)
    Terminal.error("ptrain: gradient of a batch of \(batch.count) \(dataset.name) images written to \(output)")
  }
}
