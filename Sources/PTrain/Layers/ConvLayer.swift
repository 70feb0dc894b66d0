/// Zero padding of a convolution: none (`valid`), or enough that a stride-1 output has
/// the input's size (`same`, `(kernel − 1) / 2` on each side, as Keras and PyTorch's
/// `padding="same"` do for odd kernels).
public enum Padding: String, Sendable, Hashable {
  case valid, same
}

/// A 2-D convolution with `filters` output channels and a square, odd `kernel`:
/// `conv 32 3x3 [stride S] [same|valid] [nobias]`. Its weight is K×K×in×out (HWIO), then
/// its bias; PyTorch's `Conv2d` holds the weight as OIHW.
package struct ConvLayer: LayerKind {
  package let filters: Int, kernel: Int, stride: Int
  package let padding: Padding
  package let bias: Bool

  package static let word = "conv"
  /// The largest kernel and stride the model text takes.
  static let kernels = 1...7, strides = 1...2

  /// The zero padding on each side, in pixels.
  package var pad: Int { padding == .same ? (kernel - 1) / 2 : 0 }

  package static func parse(_ text: inout ModelTextParser) throws -> ConvLayer {
    let filters = try text.integer("the number of filters", in: 1...4096)
    let kernelStart = text.peek().start
    let kernel = try text.square("the kernel size", in: kernels)
    guard kernel % 2 == 1 else { throw text.failure("an odd kernel size (1x1, 3x3, 5x5 or 7x7)", at: kernelStart) }
    var stride = 1
    var padding = Padding.valid
    var bias = true
    while true {
      switch text.peek().text {
      case "stride":
        _ = text.next()
        stride = try text.integer("the stride", in: strides)
      case "same": (_, padding) = (text.next(), .same)
      case "valid": (_, padding) = (text.next(), .valid)
      case "nobias": (_, bias) = (text.next(), false)
      default: return ConvLayer(filters: filters, kernel: kernel, stride: stride, padding: padding, bias: bias)
      }
    }
  }

  package var text: String {
    "conv \(filters) \(kernel)x\(kernel)" + (stride != 1 ? " stride \(stride)" : "")
      + (padding == .same ? " same" : "") + (bias ? "" : " nobias")
  }

  package func plan(_ layer: inout LayerPlanning) throws {
    try layer.requireMap(" (put it before flatten)")
    let input = layer.input
    guard input.height + 2 * pad >= kernel, input.width + 2 * pad >= kernel else {
      throw layer.failure("has a \(kernel)x\(kernel) kernel larger than the map")
    }
    guard stride <= max(input.height, input.width) else { throw layer.failure("has a stride larger than the map") }
    let output = ImageShape(
      height: (input.height + 2 * pad - kernel) / stride + 1, width: (input.width + 2 * pad - kernel) / stride + 1,
      channels: filters)
    layer.output = output
    layer.addWeight([kernel, kernel, input.channels, filters])
    if bias { layer.addBias([filters]) }
    let macs = output.height * output.width * kernel * kernel * input.channels * filters
    let passes = layer.needsInputGradient ? 3 : 2
    layer.directFlops = 2 * macs * passes
    (layer.kernel, layer.executedFlops) = chooseKernel(input: input, output: output, layer: layer)
  }

  /// The kernel that runs the convolution and the FLOP of one training image on it.
  private func chooseKernel(input: ImageShape, output: ImageShape, layer: LayerPlanning) -> (ModelPlan.Kernel, Int) {
    let needsInputGradient = layer.needsInputGradient
    guard kernel == 3 && stride == 1 && input.channels % 16 == 0 && filters % 16 == 0 else {
      let oneChannel = kernel == 3 && stride == 1 && input.channels == 1 && filters % 32 == 0 && !needsInputGradient
      return (oneChannel ? .directOneChannel : .im2colGemm, layer.directFlops)
    }
    // F(4×4, 3×3) from 8×8 maps up: 4 or more tiles per image, so that a shard's images
    // (one GEMM per point for all of them) make GEMMs long enough to run near the FMA
    // peak. On smaller maps its 4×4 tiles would mostly pad. F(5×5, 3×3) where its tiles
    // need fewer point multiplies still (ties go to the cheaper transforms).
    func tiles(_ h: Int, _ w: Int, _ tile: Int) -> Int { ((h + tile - 1) / tile) * ((w + tile - 1) / tile) }
    func flops(_ tile: Int) -> Int {
      let pointMACs = (tile + 2) * (tile + 2) * input.channels * filters
      return 2 * pointMACs
        * (2 * tiles(output.height, output.width, tile)
          + (needsInputGradient ? tiles(input.height, input.width, tile) : 0))
    }
    let large = output.height >= 8 && output.width >= 8
    let tile = large ? (flops(5) < flops(4) ? 5 : 4) : 2
    return (tile == 5 ? .winograd5 : tile == 4 ? .winograd4 : .winograd, flops(tile))
  }

  package func torchModule(_ layer: ModelPlan.PlannedLayer) -> String {
    var arguments = ["\(layer.input.channels)", "\(filters)", "\(kernel)"]
    if stride != 1 { arguments.append("stride=\(stride)") }
    if padding == .same { arguments.append("padding=\(pad)") }
    if !bias { arguments.append("bias=False") }
    return "Conv2d(\(arguments.joined(separator: ", ")))"
  }

  /// The kernel the plan chose: a Winograd scheme, the one-channel direct kernel or im2col.
  package func operation(_ layer: ModelPlan.PlannedLayer) -> LayerOperation {
    switch layer.kernel {
    case .winograd?: .winograd
    case .winograd4?: .winograd4
    case .winograd5?: .winograd5
    case .directOneChannel?: .directOneChannel
    default: .im2colGemm
    }
  }

  /// Glorot-uniform weights (fans K·K·in and K·K·out), zero bias.
  package func initialize(
    _ layer: ModelPlan.PlannedLayer, parameters values: inout [Float], using generator: inout SeededGenerator
  ) {
    glorotUniform(
      layer.weight!.range, fanIn: kernel * kernel * layer.input.channels, fanOut: kernel * kernel * filters,
      into: &values, using: &generator)
  }

  package var storesReLU: Bool { true }
}

extension Layer {
  /// A 2-D convolution with `filters` output channels and a square, odd `kernel`.
  public static func conv(
    filters: Int, kernel: Int, stride: Int = 1, padding: Padding = .valid, bias: Bool = true
  ) -> Layer {
    Layer(ConvLayer(filters: filters, kernel: kernel, stride: stride, padding: padding, bias: bias))
  }

  /// A convolution, Keras-style: `.conv(32, kernel: 3, padding: .same)`.
  public static func conv(
    _ filters: Int, kernel: Int, stride: Int = 1, padding: Padding = .valid, bias: Bool = true
  ) -> Layer {
    .conv(filters: filters, kernel: kernel, stride: stride, padding: padding, bias: bias)
  }
}
