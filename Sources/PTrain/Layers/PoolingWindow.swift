/// The windows of a max- or average-pool: `size` × `size`, moved by `stride` (by default
/// `size`): the text `SIZE [stride S]` and the shape rule both pools share.
package struct PoolingWindow: Sendable, Hashable {
  package let size: Int, stride: Int

  package init(size: Int, stride: Int? = nil) {
    self.size = size
    self.stride = stride ?? size
  }

  /// Reads `SIZE [stride S]`.
  static func parse(_ text: inout ModelTextParser) throws -> PoolingWindow {
    let size = try text.integer("the pool size", in: 2...3)
    guard text.peek().text == "stride" else { return PoolingWindow(size: size) }
    _ = text.next()
    return PoolingWindow(size: size, stride: try text.integer("the stride", in: 1...3))
  }

  /// ` SIZE` and, when it is not the size, ` stride S`.
  var text: String { " \(size)" + (stride != size ? " stride \(stride)" : "") }

  /// The pooled map's shape, or the reason the layer does not fit its input.
  func plan(_ layer: inout LayerPlanning) throws {
    try layer.requireMap()
    let input = layer.input
    guard input.height >= size, input.width >= size else { throw layer.failure("would pool the map below 1x1") }
    layer.output = ImageShape(
      height: (input.height - size) / stride + 1, width: (input.width - size) / stride + 1, channels: input.channels)
  }

  /// PyTorch's arguments: `2` or `3, stride=2`.
  var torchArguments: String { "\(size)" + (stride != size ? ", stride=\(stride)" : "") }
}
