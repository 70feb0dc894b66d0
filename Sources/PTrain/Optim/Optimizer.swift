/// How a step's gradient changes the parameters. State kept per parameter (Adam's moments,
/// SGD's momentum) lives in flat buffers parallel to the parameters, so that any contiguous
/// range can be updated on its own: every worker updates its slice, every MPI rank its
/// share. Each buffer has a name, PyTorch's, under which a checkpoint stores it per tensor
/// (`optimizer.exp_avg.0.weight`, `optimizer.momentum_buffer.0.weight`).
///
/// `OptimizerSettings.makeOptimizer` makes the conformer a run's settings ask for.
package protocol Optimizer: AnyObject {
  /// The names of the state buffers, in `state`'s order: PyTorch's (`exp_avg`, `exp_avg_sq`).
  var stateNames: [String] { get }
  /// Whether `value` can be a value of the state buffer called `name` (a second moment
  /// is never negative); a checkpoint's values are checked with it before a run resumes.
  func isValid(_ value: Float, inState name: String) -> Bool
  /// The update rule and its constants, as the checkpoint's metadata and messages say them.
  var description: String { get }
  /// Steps taken so far.
  var step: Int { get }
  /// The state buffers, one value per parameter each, in `stateNames`' order.
  var state: [AlignedFloats] { get }
  /// Updates `parameters[range]` for step `step + 1` from `gradient[range] · gradientScale`
  /// (the mean of the step's gradients) at `learningRate` (the schedule's rate for this
  /// step), with weight decay `weightDecay` (0 for the parameters that do not decay), so
  /// that the bits do not depend on where a range starts. Every worker calls it for its
  /// own ranges. Cost: O(range.count).
  func update(
    _ range: Range<Int>, parameters: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>,
    gradientScale: Float, learningRate: Float, weightDecay: Float)
  /// Records that a step's updates are complete (one caller, after every worker's update).
  func finishStep()
  /// Restores the step count and the state buffers (in `stateNames`' order).
  func restore(step: Int, state: [[Float]])
}

/// The bias corrections `1 − β^t` of Adam's moments at step `t` (from 1), in Double as
/// PyTorch computes them in Python floats (`Adam` passes its Float β widened, as it always has).
func adamBiasCorrection(beta: Double, step t: Int) -> Double {
  1 - pow(beta, Double(t))
}

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif
