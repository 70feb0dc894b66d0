import Foundation
import PTrain

/// PyTorch's semantics for any `ModelDefinition`, written out plainly in Double: NCHW
/// activations, OIHW convolution weights, `Flatten` in C,H,W order, BatchNorm with batch
/// statistics in training and running statistics in evaluation, and tensors looked up by
/// their `nn.Sequential` names. The tests use it as the naive reference of every layer and
/// to check that checkpoints mean the same model to PyTorch as to ptrain.
struct TorchModel {
  let plan: ModelPlan
  /// The state dict: parameters and BatchNorm statistics by PyTorch name, in PyTorch layout.
  var state: [String: [Double]]

  /// A channels × height × width activation of one image.
  struct Map {
    var channels: Int, height: Int, width: Int
    var values: [Double]
    subscript(c: Int, y: Int, x: Int) -> Double { values[(c * height + y) * width + x] }
  }

  init(plan: ModelPlan, parameters: [Float], statistics: [Float]? = nil) {
    self.plan = plan
    var state: [String: [Double]] = [:]
    for (name, _, values) in parameters.withUnsafeBufferPointer({ plan.torchTensors($0.baseAddress!) }) {
      state[name] = values.map(Double.init)
    }
    let running = statistics ?? plan.initialState
    for (name, _, values) in running.withUnsafeBufferPointer({
      plan.torchTensors($0.baseAddress!, of: plan.stateTensors)
    }) {
      state[name] = values.map(Double.init)
    }
    self.state = state
  }

  /// A standardised image (H×W×C bytes, channels last, as ptrain keeps them) as a map.
  static func input(_ bytes: [UInt8], shape: ImageShape, normalization: Normalization) -> Map {
    var values = [Double](repeating: 0, count: shape.count)
    for y in 0..<shape.height {
      for x in 0..<shape.width {
        for c in 0..<shape.channels {
          let byte = Double(bytes[(y * shape.width + x) * shape.channels + c])
          values[(c * shape.height + y) * shape.width + x] =
            (byte / 255 - Double(normalization.mean[c])) / Double(normalization.standardDeviation[c])
        }
      }
    }
    return Map(channels: shape.channels, height: shape.height, width: shape.width, values: values)
  }

  /// The logits of a batch. In `training`, BatchNorm uses the batch's statistics and each
  /// dropout layer multiplies by `dropout(layer, image)` (a factor per value).
  func forward(_ batch: [Map], training: Bool, dropout: (Int, Int) -> [Double] = { _, _ in [] }) -> [[Double]] {
    var outputs: [[Map]] = []
    for planned in plan.layers {
      let i = planned.torchPath
      func output(_ layer: Int) -> [Map] { layer < 0 ? batch : outputs[layer] }
      var maps = output(planned.input0)
      defer { outputs.append(maps) }
      switch planned.layer.kind {
      case let conv as ConvLayer:
        let (filters, kernel, stride, pad) = (conv.filters, conv.kernel, conv.stride, conv.pad)
        let w = state["\(i).weight"]!
        let b = conv.bias ? state["\(i).bias"]! : [Double](repeating: 0, count: filters)
        maps = maps.map { x in
          let oh = (x.height + 2 * pad - kernel) / stride + 1
          let ow = (x.width + 2 * pad - kernel) / stride + 1
          var y = [Double](repeating: 0, count: filters * oh * ow)
          for o in 0..<filters {
            for oy in 0..<oh {
              for ox in 0..<ow {
                var sum = b[o]
                for c in 0..<x.channels {
                  for ky in 0..<kernel {
                    for kx in 0..<kernel {
                      let iy = oy * stride - pad + ky
                      let ix = ox * stride - pad + kx
                      guard iy >= 0 && iy < x.height && ix >= 0 && ix < x.width else { continue }
                      sum += w[((o * x.channels + c) * kernel + ky) * kernel + kx] * x[c, iy, ix]
                    }
                  }
                }
                y[(o * oh + oy) * ow + ox] = sum
              }
            }
          }
          return Map(channels: filters, height: oh, width: ow, values: y)
        }
      case is BatchNormLayer:
        let gamma = state["\(i).weight"]!
        let beta = state["\(i).bias"]!
        let channels = gamma.count
        let perChannel = maps[0].values.count / channels
        var mean = state["\(i).running_mean"]!
        var variance = state["\(i).running_var"]!
        if training {
          let n = Double(maps.count * perChannel)
          for c in 0..<channels {
            let values = maps.flatMap { $0.values[(c * perChannel)..<((c + 1) * perChannel)] }
            mean[c] = values.reduce(0, +) / n
            variance[c] = values.reduce(0) { $0 + ($1 - mean[c]) * ($1 - mean[c]) } / n
          }
        }
        let epsilon = Double(ModelPlan.batchNormEpsilon)
        maps = maps.map { x in
          var y = x
          for c in 0..<channels {
            for k in 0..<perChannel {
              let v = x.values[c * perChannel + k]
              y.values[c * perChannel + k] = (v - mean[c]) / (variance[c] + epsilon).squareRoot() * gamma[c] + beta[c]
            }
          }
          return y
        }
      case is ReLULayer:
        maps = maps.map {
          var y = $0
          y.values = y.values.map { max($0, 0) }
          return y
        }
      case is MaxPoolLayer, is AvgPoolLayer:
        let isMax = planned.layer.kind is MaxPoolLayer
        let window = (planned.layer.kind as? MaxPoolLayer)?.window ?? (planned.layer.kind as! AvgPoolLayer).window
        let (size, step) = (window.size, window.stride)
        maps = maps.map { x in
          let oh = (x.height - size) / step + 1
          let ow = (x.width - size) / step + 1
          var y = [Double](repeating: 0, count: x.channels * oh * ow)
          for c in 0..<x.channels {
            for oy in 0..<oh {
              for ox in 0..<ow {
                var window: [Double] = []
                for ky in 0..<size { for kx in 0..<size { window.append(x[c, oy * step + ky, ox * step + kx]) } }
                y[(c * oh + oy) * ow + ox] = isMax ? window.max()! : window.reduce(0, +) / Double(window.count)
              }
            }
          }
          return Map(channels: x.channels, height: oh, width: ow, values: y)
        }
      case is GlobalAvgPoolLayer:
        maps = maps.map { x in
          let pixels = x.height * x.width
          let y = (0..<x.channels).map { c in x.values[(c * pixels)..<((c + 1) * pixels)].reduce(0, +) / Double(pixels)
          }
          return Map(channels: x.channels, height: 1, width: 1, values: y)
        }
      case is FlattenLayer:
        maps = maps.map { Map(channels: $0.values.count, height: 1, width: 1, values: $0.values) }
      case let dense as DenseLayer:
        let units = dense.units
        let w = state["\(i).weight"]!
        let b = dense.bias ? state["\(i).bias"]! : [Double](repeating: 0, count: units)
        maps = maps.map { x in
          let y = (0..<units).map { o in
            b[o] + (0..<x.values.count).reduce(0.0) { $0 + w[o * x.values.count + $1] * x.values[$1] }
          }
          return Map(channels: units, height: 1, width: 1, values: y)
        }
      case is ResidualLayer:
        maps = zip(maps, output(planned.inputs[1])).map { body, shortcut in
          var y = body
          for k in y.values.indices { y.values[k] += shortcut.values[k] }
          return y
        }
      case is DropoutLayer:
        guard training else { continue }
        maps = maps.enumerated().map { image, x in
          let factors = dropout(planned.index, image)
          var y = x
          for k in y.values.indices { y.values[k] *= factors[k] }
          return y
        }
      default:
        preconditionFailure("TorchModel: no reference for \(planned.layer.word)")
      }
    }
    return outputs.last!.map(\.values)
  }

  /// The summed cross-entropy of a batch against `labels`.
  func loss(_ batch: [Map], labels: [Int], training: Bool, dropout: (Int, Int) -> [Double] = { _, _ in [] }) -> Double {
    zip(forward(batch, training: training, dropout: dropout), labels).reduce(0) { total, pair in
      let (z, label) = pair
      let peak = z.max()!
      return total + log(z.reduce(0) { $0 + exp($1 - peak) }) - (z[label] - peak)
    }
  }
}
