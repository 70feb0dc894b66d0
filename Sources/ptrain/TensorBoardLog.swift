import Dispatch
import Foundation
import PTrain
import Synchronization

/// A TensorBoard event file in `--logdir`, named as TensorFlow and PyTorch name theirs
/// (`events.out.tfevents.<seconds>.<host>.<pid>.0`), written on a serial queue of its own:
/// a worker only encodes a few bytes and queues them, and never waits for the disk. A
/// failed write is reported once, as a warning, and the records after it are dropped;
/// training goes on.
final class TensorBoardLog: Sendable {
  let path: String
  private let queue = DispatchQueue(label: "ptrain.tensorboard")
  private let descriptor: Int32
  private let failed = Atomic<Bool>(false)

  /// Creates the event file in `directory` and writes its first record. Throws when the
  /// file cannot be created.
  init(directory: String) throws {
    let seconds = Int(Date().timeIntervalSince1970)
    var host = [CChar](repeating: 0, count: 256)
    gethostname(&host, host.count - 1)
    let hostName = host.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    path = (directory as NSString).appendingPathComponent(
      "events.out.tfevents.\(seconds).\(hostName).\(getpid()).0")
    descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0o644)
    guard descriptor >= 0 else {
      throw PTrainError("--logdir \(directory): cannot create \(path): \(String(cString: strerror(errno)))")
    }
    append(TensorBoardEvents.fileVersion(wallTime: Self.now))
  }

  /// Seconds since 1970, as `Event.wall_time` holds them.
  static var now: Double { Date().timeIntervalSince1970 }

  /// Queues `payload` (an encoded `Event`) as one record. Cost: a copy and a queue hop.
  func append(_ payload: [UInt8]) {
    guard !failed.load(ordering: .relaxed) else { return }
    queue.async { [self] in
      guard !failed.load(ordering: .relaxed) else { return }
      var bytes = TensorBoardEvents.record(payload)[...]
      while !bytes.isEmpty {
        let count = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        if count < 0 && errno == EINTR { continue }
        guard count > 0 else {
          failed.store(true, ordering: .relaxed)
          Terminal.warn(
            "--logdir: writing \(path) failed (\(String(cString: strerror(count < 0 ? errno : EIO)))); training goes on without it"
          )
          return
        }
        bytes = bytes.dropFirst(count)
      }
    }
  }

  /// Writes what is queued and closes the file.
  func close() {
    queue.sync {
      _ = fsync(descriptor)
      _ = Glibc.close(descriptor)
    }
  }
}

/// What a training run logs for TensorBoard: scalars every `every` global steps and at
/// each epoch's end, a histogram of every parameter tensor per epoch, and once a text
/// summary of the model, the options and the machine.
struct TrainingLog: Sendable {
  let log: TensorBoardLog
  let every: Int
  /// What each epoch is evaluated on: `test`, or `validation` for a validation split.
  let evaluated: String

  /// Opens the event file and writes the text summary.
  init(directory: String, every: Int, trainer: Trainer, dataset: String, evaluated: String = "test") throws {
    log = try TensorBoardLog(directory: directory)
    self.every = every
    self.evaluated = evaluated
    let plan = trainer.plan
    var lines = [
      "**model** `\(trainer.model.text)`", "",
      "| # | layer | output | parameters | kernel |", "|---:|---|---|---:|---|",
    ]
    for layer in plan.layers {
      let shape = layer.outputIsFlat ? "\(layer.output.count)" : "\(layer.output)"
      lines.append(
        "| \(layer.torchPath) | \(layer.text) | \(shape) | \(layer.parameterRange.count) | \(layer.kernel?.rawValue ?? plan.fusedChoice(layer) ?? "") |"
      )
    }
    let o = trainer.options
    lines += [
      "",
      "**data** \(dataset); **options** batch \(o.batchSize), \(o.optimizer), learning rate \(o.learningRate) (\(o.schedule)\(o.schedule.warmupSteps > 0 ? ", \(o.schedule.warmupSteps) warm-up steps" : "")), label smoothing \(o.labelSmoothing), seed \(o.seed), "
        + "epochs \(o.epochs), augment \(o.augmentation), normalize \(trainer.normalization)",
      "",
      "**machine** \(CPUSupport.cpuName); \(trainer.processes.size) process(es) × \(o.threads) thread(s), "
        + "pinned: \(trainer.pool.isPinned) (\(trainer.pool.boundCPUs.map { $0.map(String.init).joined(separator: ",") }.joined(separator: "; ")))",
    ]
    log.append(
      TensorBoardEvents.text(
        tag: "run/summary", lines.joined(separator: "\n"), step: trainer.optimizer.step, wallTime: TensorBoardLog.now))
  }

  /// Logs `event`; on `.epochFinished` (the calling thread), also the parameters'
  /// histograms. `step` is the global optimizer step after the event.
  func record(_ event: TrainingEvent, step: Int, trainer: Trainer) {
    let now = TensorBoardLog.now
    switch event {
    case .step(let p):
      guard step % every == 0 else { return }
      log.append(
        TensorBoardEvents.scalars(
          [
            ("train/loss", Float(p.loss)), ("train/accuracy", Float(p.accuracy)),
            ("learning_rate", p.learningRate),
            ("images_per_second", Float(Double(p.images) / max(p.seconds, 1e-9))),
          ], step: step, wallTime: now))
    case .epochFinished(let r):
      var values: [(tag: String, value: Float)] = [
        ("epoch/train_loss", Float(r.trainLoss)), ("epoch/train_accuracy", Float(r.trainAccuracy)),
        ("epoch/images_per_second", Float(r.imagesPerSecond)),
      ]
      if let test = r.test {
        values += [
          ("epoch/\(evaluated)_loss", Float(test.loss)), ("epoch/\(evaluated)_accuracy", Float(test.accuracy)),
        ]
      }
      log.append(TensorBoardEvents.scalars(values, step: step, wallTime: now))
      let parameters = trainer.parameterValues
      for tensor in trainer.plan.tensors {
        log.append(
          TensorBoardEvents.histogram(
            tag: "parameters/\(tensor.name)", values: Array(parameters[tensor.range]), step: step, wallTime: now))
      }
    }
  }
}
