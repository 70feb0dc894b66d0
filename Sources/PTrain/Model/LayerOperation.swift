/// The operation a replica runs for a planned layer: which forward and backward kernels
/// its passes call. Each layer kind names its own (`LayerKind.operation`); a convolution's
/// follows the kernel its plan chose.
package enum LayerOperation: Sendable {
  /// Winograd F(2×2, 3×3), F(4×4, 3×3) and F(5×5, 3×3) convolutions: a group of images at a time.
  case winograd, winograd4, winograd5
  /// The 3×3 one-input-channel convolution with its filters in registers.
  case directOneChannel
  /// Any other convolution: im2col, then a GEMM.
  case im2colGemm
  case batchNorm, relu, maxPool, avgPool, globalAvgPool, flatten
  /// A matrix-vector product per image, four images per pass over the weights.
  case dense
  case dropout
  /// A residual block's addition of its body's and its shortcut's outputs.
  case add
}
