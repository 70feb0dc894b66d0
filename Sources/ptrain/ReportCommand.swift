import ArgumentParser
import Foundation
import PTrain

/// `ptrain report`: the HTML report of a finished run, from its `--json` summary or from
/// a checkpoint (evaluated again on its test data; its curves come from the epochs the
/// checkpoint recorded).
struct ReportCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "report",
    abstract: "Write a self-contained HTML report of a run from its --json summary or a checkpoint.",
    discussion: """
      The page has the loss and accuracy curves per epoch, the confusion matrix as a heat map, \
      per-class precision, recall and F1, throughput per epoch, and the settings with the \
      parameters' SHA-256, all as inline SVG: it opens offline in any browser.
      """)

  @Argument(help: ArgumentHelp("A `ptrain train --json` summary, or a .safetensors checkpoint.", valueName: "SOURCE"))
  var source: String

  @Option(name: .shortAndLong, help: ArgumentHelp("Where to write the HTML.", valueName: "PATH"))
  var output: String

  @Option(
    parsing: .unconditional,
    help:
      "Worker threads, when evaluating a checkpoint. (default: the physical cores the process may use, split among the MPI ranks on a node)"
  )
  var threads: Int?

  func run() throws {
    try checkOutputPath(output, flag: "--output")
    try refuseOverwriting(
      inputs: [NamedPath(role: "SOURCE", path: source)], outputs: [NamedPath(role: "--output", path: output)])
    let bytes = try readFile(source, limit: 1 << 30)
    let run: RunSummary
    if bytes.first(where: { ![0x20, 0x0a, 0x0d, 0x09].contains($0) }) == UInt8(ascii: "{") {
      let decoder = JSONDecoder()
      // The summary's keys are snake_case; `parameters_sha256` maps to `parametersSHA256`.
      decoder.keyDecodingStrategy = .custom { path in
        let key = path.last!.stringValue
        let parts = key.split(separator: "_")
        let camel =
          (parts.first.map(String.init) ?? "")
          + parts.dropFirst().map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
        return AnyCodingKey(camel.replacingOccurrences(of: "Sha256", with: "SHA256"))
      }
      do { run = try decoder.decode(RunSummary.self, from: Data(bytes)) } catch {
        throw PTrainError("\(source): not a ptrain train --json summary (\(error))")
      }
      do { try run.validate() } catch let error as PTrainError { throw PTrainError("\(source): \(error)") }
    } else {
      try CPUSupport.requireVectorUnits()
      let checkpoint = try Checkpoint(path: source)
      let (dataset, trainer) = try Evaluate.prepare(
        checkpoint, dataset: nil, data: nil, threads: threads, topology: try Topology())
      let evaluation = try trainer.evaluate(dataset.test)
      let history = try checkpoint.metadata["history"].map { try RunSummary.history(decoding: $0, of: source) }
      var options = checkpoint.hasTrainingState ? try checkpoint.trainingState().options : trainer.options
      options.threads = trainer.options.threads
      run = RunSummary(
        dataset: dataset.name, trainImages: Int(checkpoint.metadata["train_images"] ?? "") ?? dataset.train.count,
        options: options, summary: nil,
        evaluation: evaluation, parametersSHA256: trainer.parametersSHA256, pinned: trainer.pool.isPinned, profile: nil,
        checkpoint: source, model: checkpoint.model.text, classNames: dataset.classNames, history: history ?? [])
    }
    try writeFileAtomically(Array(HTMLReport.render(run).utf8), to: output)
    try Terminal.output("report written to \(output)")
  }
}

/// A coding key made from a string, for renaming keys while decoding.
private struct AnyCodingKey: CodingKey {
  let stringValue: String
  var intValue: Int? { nil }
  init(_ string: String) { stringValue = string }
  init?(stringValue: String) { self.stringValue = stringValue }
  init?(intValue: Int) { nil }
}
