/// The mapping between ptrain's parameter layout and PyTorch's
/// `nn.Sequential(Conv2d(1,32,3), ReLU(), MaxPool2d(2), Conv2d(32,64,3), ReLU(), MaxPool2d(2),
/// Flatten(), Linear(1600,classes))`:
///
/// | ptrain | PyTorch | rearrangement |
/// |---|---|---|
/// | `conv1.weight` [3,3,1,32] HWIO | `0.weight` [32,1,3,3] OIHW | transpose |
/// | `conv1.bias` [32] | `0.bias` [32] | none |
/// | `conv2.weight` [3,3,32,64] HWIO | `3.weight` [64,32,3,3] OIHW | transpose |
/// | `conv2.bias` [64] | `3.bias` [64] | none |
/// | `dense.weight` [classes,1600], inputs H,W,C | `7.weight` [classes,1600], inputs C,H,W | permute columns |
/// | `dense.bias` [classes] | `7.bias` [classes] | none |
extension ModelSpec {
  /// PyTorch's name of `tensor`, for example `3.weight` for `conv2.weight`.
  public func torchName(of tensor: Tensor) -> String {
    "\(tensor.layer.torchIndex).\(tensor.name.split(separator: ".").last!)"
  }

  /// PyTorch's shape of `tensor`: OIHW for convolution kernels, else unchanged.
  public func torchShape(of tensor: Tensor) -> [Int] {
    let s = tensor.shape
    return s.count == 4 ? [s[3], s[2], s[0], s[1]] : s
  }

  /// For each element of `tensor` in PyTorch's order, its index within ptrain's tensor.
  /// Cost: O(tensor.count).
  func torchGatherIndices(of tensor: Tensor) -> [Int] {
    let s = tensor.shape
    if s.count == 4 {  // OIHW ← HWIO
      let (kh, kw, inputs, outputs) = (s[0], s[1], s[2], s[3])
      var indices: [Int] = []
      indices.reserveCapacity(tensor.count)
      for o in 0..<outputs {
        for i in 0..<inputs {
          for h in 0..<kh {
            for w in 0..<kw { indices.append(((h * kw + w) * inputs + i) * outputs + o) }
          }
        }
      }
      return indices
    }
    if tensor.layer == .dense && s.count == 2 {  // columns C,H,W ← H,W,C
      let channels = conv2.outChannels
      let side = Int(Double(features / channels).squareRoot())
      var indices: [Int] = []
      indices.reserveCapacity(tensor.count)
      for row in 0..<s[0] {
        for c in 0..<channels {
          for h in 0..<side {
            for w in 0..<side { indices.append(row * features + (h * side + w) * channels + c) }
          }
        }
      }
      return indices
    }
    return Array(0..<tensor.count)
  }

  /// The tensors of a parameter-sized buffer in PyTorch's names, shapes and layouts, each
  /// name preceded by `prefix`. Cost: O(parameterCount).
  public func torchTensors(_ values: UnsafePointer<Float>, prefix: String = "")
    -> [(name: String, shape: [Int], values: [Float])]
  {
    tensors.map { tensor in
      let base = values + tensor.offset
      return (prefix + torchName(of: tensor), torchShape(of: tensor), torchGatherIndices(of: tensor).map { base[$0] })
    }
  }

  /// Copies the tensors named `prefix` + PyTorch name from `file` into `values` (a
  /// parameter-sized buffer in ptrain's layout), skipping the layers in `skipping`.
  /// Throws a one-line error naming `path` and the tensor for a missing tensor or a
  /// dtype or shape that does not fit. Cost: O(parameterCount).
  public func readTorchTensors(
    from file: SafeTensors, prefix: String = "", into values: UnsafeMutablePointer<Float>, path: String,
    skipping: Set<Layer> = []
  ) throws {
    for tensor in tensors where !skipping.contains(tensor.layer) {
      let name = prefix + torchName(of: tensor)
      guard let entry = file.entries[name] else {
        throw PTrainError("\(path): has no tensor \(name) (\(tensor.name)); is it a checkpoint of this model?")
      }
      guard entry.shape == torchShape(of: tensor) else {
        throw PTrainError(
          "\(path): \(name) has shape \(entry.shape), the model needs \(torchShape(of: tensor))"
            + (tensor.layer == .dense ? "; pass --new-head to replace the classifier" : ""))
      }
      let source: [Float]
      do {
        source = try file.floats(name)!
      } catch let error as PTrainError {
        throw PTrainError("\(path): \(error.description)")
      }
      let base = values + tensor.offset
      for (torchIndex, index) in torchGatherIndices(of: tensor).enumerated() { base[index] = source[torchIndex] }
    }
  }
}
