import PTrain

/// PyTorch's semantics written out plainly: NCHW activations, OIHW conv weights and a
/// flatten in C,H,W order, as `nn.Sequential(Conv2d(1,32,3), ReLU(), MaxPool2d(2),
/// Conv2d(32,64,3), ReLU(), MaxPool2d(2), Flatten(), Linear(1600,K))` computes. Tests use it
/// to check that checkpoints mean the same model to PyTorch as to ptrain.
enum TorchReference {
  /// Valid 3×3 convolution of a C×H×W input with O×C×3×3 weights.
  static func conv(_ x: [Float], channels: Int, size: Int, _ w: [Float], _ b: [Float]) -> [Float] {
    let outputs = b.count
    let outSize = size - 2
    var y = [Float](repeating: 0, count: outputs * outSize * outSize)
    for o in 0..<outputs {
      for oy in 0..<outSize {
        for ox in 0..<outSize {
          var sum = b[o]
          for c in 0..<channels {
            for ky in 0..<3 {
              for kx in 0..<3 {
                sum += w[((o * channels + c) * 3 + ky) * 3 + kx] * x[(c * size + oy + ky) * size + ox + kx]
              }
            }
          }
          y[(o * outSize + oy) * outSize + ox] = max(sum, 0)  // with the ReLU
        }
      }
    }
    return y
  }

  /// 2×2 max pooling of a C×H×W map, flooring odd sizes.
  static func pool(_ x: [Float], channels: Int, size: Int) -> [Float] {
    let outSize = size / 2
    var y = [Float](repeating: 0, count: channels * outSize * outSize)
    for c in 0..<channels {
      for oy in 0..<outSize {
        for ox in 0..<outSize {
          var m = -Float.infinity
          for dy in 0..<2 { for dx in 0..<2 { m = max(m, x[(c * size + 2 * oy + dy) * size + 2 * ox + dx]) } }
          y[(c * outSize + oy) * outSize + ox] = m
        }
      }
    }
    return y
  }

  /// The logits for one standardised 28×28 image, from a PyTorch state dict.
  static func forward(_ image: [Float], state: [String: [Float]]) -> [Float] {
    let a1 = pool(conv(image, channels: 1, size: 28, state["0.weight"]!, state["0.bias"]!), channels: 32, size: 26)
    let a2 = pool(conv(a1, channels: 32, size: 13, state["3.weight"]!, state["3.bias"]!), channels: 64, size: 11)
    return Naive.dense(a2, state["7.weight"]!, state["7.bias"]!)
  }
}
