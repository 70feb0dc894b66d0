/// The mapping between ptrain's parameter layout and PyTorch's `nn.Sequential` of the same
/// layers (`ModelPlan.PlannedLayer.torchModule`), whose `state_dict` names each tensor by
/// its layer's index:
///
/// | ptrain | PyTorch | rearrangement |
/// |---|---|---|
/// | conv weight [K,K,in,out] HWIO | `i.weight` [out,in,K,K] OIHW | transpose |
/// | dense weight [out,in], `in` in H,W,C order of a flattened map | `i.weight` [out,in], `in` in C,H,W order | permute columns |
/// | BatchNorm1d on a flattened map: γ, β, running statistics in H,W,C order | the same names, C,H,W order | permute |
/// | biases, other BatchNorms' γ (`i.weight`), β (`i.bias`), running statistics | the same names | none |
extension ModelPlan {
  /// PyTorch's shape of `tensor`: OIHW for convolution kernels, else unchanged.
  package func torchShape(of tensor: Tensor) -> [Int] {
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
    let features = s.count == 2 || layers[tensor.layer].layer == .batchNorm
    if features, let map = layers[tensor.layer].flattenedMap, map.height * map.width > 1 {
      // Features (a dense weight's columns, a BatchNorm's channels) C,H,W ← H,W,C.
      let features = map.count
      var indices: [Int] = []
      indices.reserveCapacity(tensor.count)
      for row in 0..<(s.count == 2 ? s[0] : 1) {
        for c in 0..<map.channels {
          for h in 0..<map.height {
            for w in 0..<map.width { indices.append(row * features + (h * map.width + w) * map.channels + c) }
          }
        }
      }
      return indices
    }
    return Array(0..<tensor.count)
  }

  /// `tensor` as PyTorch holds it: its shape there (OIHW for a convolution's weight) and
  /// its values in that shape's order, taken from `values`, a buffer in ptrain's layout
  /// (`Trainer.parameterValues`, `Checkpoint.parameters`). `Tensor.shape` and the buffer's
  /// `tensor.range` are ptrain's own layout (HWIO, and H,W,C-ordered dense inputs).
  /// Cost: O(tensor.count).
  public func torchValues(of tensor: Tensor, in values: [Float]) -> (shape: [Int], values: [Float]) {
    precondition(values.count >= tensor.range.upperBound, "the buffer does not hold \(tensor.name)")
    return values.withUnsafeBufferPointer {
      (
        torchShape(of: tensor),
        torchGatherIndices(of: tensor).map { [base = $0.baseAddress! + tensor.offset] in base[$0] }
      )
    }
  }

  /// The tensors of `tensors` (parameters, or `stateTensors`) from a buffer laid out for
  /// them, in PyTorch's names, shapes and layouts, each name preceded by `prefix`.
  /// Cost: O(buffer).
  package func torchTensors(_ values: UnsafePointer<Float>, of tensors: [Tensor]? = nil, prefix: String = "")
    -> [(name: String, shape: [Int], values: [Float])]
  {
    (tensors ?? self.tensors).map { tensor in
      let base = values + tensor.offset
      return (prefix + tensor.name, torchShape(of: tensor), torchGatherIndices(of: tensor).map { base[$0] })
    }
  }

  /// Copies the tensors of `tensors` (the parameters by default) named `prefix` + their
  /// PyTorch name from `file` into `values`, a buffer in ptrain's layout, skipping the
  /// layers at `skipping`. Throws a one-line error naming `path` and the tensor for a
  /// missing tensor or a dtype or shape that does not fit. Cost: O(buffer).
  package func readTorchTensors(
    from file: SafeTensors, of tensors: [Tensor]? = nil, prefix: String = "", into values: UnsafeMutablePointer<Float>,
    path: String, skipping: Set<Int> = []
  ) throws {
    for tensor in tensors ?? self.tensors where !skipping.contains(tensor.layer) {
      let name = prefix + tensor.name
      let layer = layers[tensor.layer]
      guard let entry = file.entries[name] else {
        throw PTrainError(
          "\(path): has no tensor \(name) (layer \(layer.name), \(layer.layer.text)); is it a checkpoint of this model?"
        )
      }
      guard entry.shape == torchShape(of: tensor) else {
        let isHead = tensor.layer == layers.count - 1
        throw PTrainError(
          "\(path): \(name) has shape \(entry.shape), the model needs \(torchShape(of: tensor))"
            + (isHead ? "; pass --new-head to replace the classifier" : ""))
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
