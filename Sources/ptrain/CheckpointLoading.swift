import ArgumentParser
import PTrain

/// `--normalize` for a checkpoint that does not store its normalisation: a `state_dict`
/// that PyTorch saved. `--model` (each command's own) gives its model.
struct StoredNormalizationOption: ParsableArguments {
  @Option(
    help: ArgumentHelp(
      "For a checkpoint that does not store it (a PyTorch state_dict): the per-channel mean and standard deviation of pixel/255 its model was trained with, as MEAN,STD (or M1,M2,M3,S1,S2,S3).",
      valueName: "MEAN,STD"))
  var normalize: String?

  /// The help of `evaluate`'s and `predict`'s `--model`, which names the model of such a file.
  static let modelHelp =
    "For a checkpoint that does not store its model (a PyTorch state_dict): a built-in model or a model text; the head's classes come from the file."

  /// `--normalize` parsed, one mean and one deviation per channel; a usage error when
  /// malformed.
  func normalization() throws -> Normalization? {
    guard let normalize else { return nil }
    let count = normalize.split(separator: ",", omittingEmptySubsequences: false).count
    return try usage { try Normalization(parsing: normalize, channels: max(count / 2, 1)) }
  }

  /// Reads the checkpoint at `path`. `modelText` (`--model`: a built-in name or a model
  /// text) and `--normalize` stand in for what a file without them does not store; for a
  /// file that stores its own they are refused, unless `modelIsTarget` (finetune, whose
  /// `--model` is the model to train).
  func load(_ path: String, modelText: String?, modelIsTarget: Bool = false) throws -> Checkpoint {
    let model = try modelText.map { text in try usage { try ModelOptions.definition(text, input: nil) } }
    let checkpoint = try Checkpoint(path: path, model: model, normalization: try normalization())
    if !modelIsTarget, modelText != nil, checkpoint.metadata["model_text"] != nil {
      throw ValidationError("\(path) stores its model; --model is for a file without one (a PyTorch state_dict)")
    }
    if normalize != nil, checkpoint.metadata["normalize"] != nil {
      throw ValidationError(
        "\(path) stores its normalisation (\(checkpoint.normalization)); --normalize is for a file without one")
    }
    return checkpoint
  }
}
