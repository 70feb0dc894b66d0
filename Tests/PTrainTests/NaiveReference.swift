@_spi(Kernels) import PTrain

// Plain loops that state what each kernel computes, written for clarity only. NHWC
// activations, HWIO conv weights, [out][in] dense weights, as in the engine.

enum Naive {
  static func gemm(_ a: [Float], _ b: [Float], m: Int, n: Int, k: Int) -> [Float] {
    var c = [Float](repeating: 0, count: m * n)
    for i in 0..<m { for j in 0..<n { for p in 0..<k { c[i * n + j] += a[i * k + p] * b[p * n + j] } } }
    return c
  }

  static func transpose(_ a: [Float], rows: Int, columns: Int) -> [Float] {
    var t = [Float](repeating: 0, count: a.count)
    for r in 0..<rows { for c in 0..<columns { t[c * rows + r] = a[r * columns + c] } }
    return t
  }

  static func convForward(_ x: [Float], _ w: [Float], _ bias: [Float], _ s: Conv3x3Shape) -> [Float] {
    var out = [Float](repeating: 0, count: s.outPixels * s.outChannels)
    for oy in 0..<s.outHeight {
      for ox in 0..<s.outWidth {
        for co in 0..<s.outChannels {
          var sum = bias[co]
          for ky in 0..<3 {
            for kx in 0..<3 {
              for ci in 0..<s.inChannels {
                sum +=
                  x[((oy + ky) * s.width + ox + kx) * s.inChannels + ci]
                  * w[((ky * 3 + kx) * s.inChannels + ci) * s.outChannels + co]
              }
            }
          }
          out[(oy * s.outWidth + ox) * s.outChannels + co] = sum
        }
      }
    }
    return out
  }

  /// (dW, dB, dX) of `Σ dOut ⊙ conv(x, w, b)`.
  static func convBackward(_ x: [Float], _ w: [Float], _ dOut: [Float], _ s: Conv3x3Shape)
    -> (dW: [Float], dB: [Float], dX: [Float])
  {
    var dW = [Float](repeating: 0, count: w.count)
    var dB = [Float](repeating: 0, count: s.outChannels)
    var dX = [Float](repeating: 0, count: x.count)
    for oy in 0..<s.outHeight {
      for ox in 0..<s.outWidth {
        for co in 0..<s.outChannels {
          let g = dOut[(oy * s.outWidth + ox) * s.outChannels + co]
          dB[co] += g
          for ky in 0..<3 {
            for kx in 0..<3 {
              for ci in 0..<s.inChannels {
                let xi = ((oy + ky) * s.width + ox + kx) * s.inChannels + ci
                let wi = ((ky * 3 + kx) * s.inChannels + ci) * s.outChannels + co
                dW[wi] += g * x[xi]
                dX[xi] += g * w[wi]
              }
            }
          }
        }
      }
    }
    return (dW, dB, dX)
  }

  static func maxPool(_ x: [Float], height: Int, width: Int, channels: Int) -> [Float] {
    var out: [Float] = []
    for oy in 0..<height / 2 {
      for ox in 0..<width / 2 {
        for c in 0..<channels {
          var best = -Float.infinity
          for dy in 0..<2 {
            for dx in 0..<2 { best = max(best, x[((2 * oy + dy) * width + 2 * ox + dx) * channels + c]) }
          }
          out.append(best)
        }
      }
    }
    return out
  }

  static func maxPoolBackward(_ x: [Float], _ dOut: [Float], height: Int, width: Int, channels: Int) -> [Float] {
    var dX = [Float](repeating: 0, count: x.count)
    let outWidth = width / 2
    for oy in 0..<height / 2 {
      for ox in 0..<outWidth {
        for c in 0..<channels {
          var bestIndex = -1
          for dy in 0..<2 {
            for dx in 0..<2 {
              let i = ((2 * oy + dy) * width + 2 * ox + dx) * channels + c
              if bestIndex < 0 || x[i] > x[bestIndex] { bestIndex = i }
            }
          }
          dX[bestIndex] += dOut[(oy * outWidth + ox) * channels + c]
        }
      }
    }
    return dX
  }

  static func dense(_ x: [Float], _ w: [Float], _ b: [Float]) -> [Float] {
    (0..<b.count).map { o in b[o] + (0..<x.count).reduce(Float(0)) { $0 + w[o * x.count + $1] * x[$1] } }
  }

  /// Loss and gradient of cross-entropy after softmax with label smoothing ε, in Double,
  /// as PyTorch defines it: `(1 − ε)·(−log p[label]) + ε·Σ_k(−log p[k])/K`.
  static func softmaxCrossEntropy(_ z: [Float], label: Int, smoothing ε: Double = 0) -> (Double, [Double]) {
    let peak = Double(z.max()!)
    let e = z.map { exp(Double($0) - peak) }
    let total = e.reduce(0, +)
    let logP = z.map { Double($0) - peak - log(total) }
    var gradient = e.map { $0 / total - ε / Double(z.count) }
    gradient[label] -= 1 - ε
    return ((1 - ε) * -logP[label] + ε * -logP.reduce(0, +) / Double(z.count), gradient)
  }
}

#if canImport(Glibc)
  import Glibc
#endif
