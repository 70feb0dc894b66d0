import Foundation
import XCTest

@testable import PTrain

/// Each optimizer against a plain Double implementation of the formulas its documentation
/// (and PyTorch's) gives, over three steps with a changing learning rate; and the
/// properties the trainer relies on: ranges update independently, state restores.
final class OptimizerTests: XCTestCase {
  static let count = 37
  static let steps = 3
  static let rates: [Float] = [0.01, 0.02, 0.005]

  /// A reference of one rule: `(θ, g, lr, λ, t from 1, state) → θ` in Double.
  typealias Rule = (
    _ theta: inout Double, _ g: Double, _ lr: Double, _ decay: Double, _ t: Int, _ state: inout [Double]
  )
    -> Void

  static func adamKeras(_ θ: inout Double, _ g0: Double, _ lr: Double, _ λ: Double, _ t: Int, _ s: inout [Double]) {
    let g = g0 + λ * θ
    s[0] += (g - s[0]) * 0.1
    s[1] += (g * g - s[1]) * (1 - 0.999)
    let α = lr * (1 - pow(0.999, Double(t))).squareRoot() / (1 - pow(0.9, Double(t)))
    θ -= α * s[0] / (s[1].squareRoot() + 1e-7)
  }

  static func adamW(_ θ: inout Double, _ g: Double, _ lr: Double, _ λ: Double, _ t: Int, _ s: inout [Double]) {
    θ *= 1 - lr * λ
    s[0] = 0.9 * s[0] + 0.1 * g
    s[1] = 0.999 * s[1] + (1 - 0.999) * g * g
    let denominator = s[1].squareRoot() / (1 - pow(0.999, Double(t))).squareRoot() + 1e-8
    θ -= lr / (1 - pow(0.9, Double(t))) * s[0] / denominator
  }

  static func sgd(momentum μ: Double, nesterov: Bool) -> Rule {
    { θ, g0, lr, λ, t, s in
      var g = g0 + λ * θ
      if μ > 0 {
        s[0] = t == 1 ? g : μ * s[0] + g
        g = nesterov ? g + μ * s[0] : s[0]
      }
      θ -= lr * g
    }
  }

  /// Runs `settings`' optimizer and `rule` for three steps from the same values and
  /// compares parameters and state after each.
  func check(_ settings: OptimizerSettings, _ rule: Rule, file: StaticString = #filePath, line: UInt = #line) {
    let count = Self.count
    let optimizer = settings.makeOptimizer(parameterCount: count)
    let parameters = AlignedFloats(count: count)
    parameters.copy(from: randomFloats(count, seed: 1))
    var reference = parameters.array.map(Double.init)
    var referenceState = [[Double]](repeating: [0, 0], count: count)
    let decay = Double(settings.weightDecay)
    for step in 0..<Self.steps {
      var gradient = randomFloats(count, seed: UInt64(10 + step))
      gradient[3] = 0  // a zero gradient: the moments still move
      gradient[5] = 1e-7  // where ε matters: Keras and PyTorch place it differently
      let scale: Float = 0.25
      gradient.withUnsafeBufferPointer {
        optimizer.update(
          0..<count, parameters: parameters.base, gradient: $0.baseAddress!, gradientScale: scale,
          learningRate: Self.rates[step], weightDecay: settings.weightDecay)
      }
      optimizer.finishStep()
      for i in 0..<count {
        rule(
          &reference[i], Double(gradient[i] * scale), Double(Self.rates[step]), decay, step + 1, &referenceState[i])
      }
      assertClose(
        parameters.array, reference.map(Float.init), tolerance: 2e-6, "\(settings) step \(step + 1)", file: file,
        line: line)
      for (k, buffer) in optimizer.state.enumerated() {
        assertClose(
          buffer.array, referenceState.map { Float($0[k]) }, tolerance: 2e-6, "\(settings) state \(k)", file: file,
          line: line)
      }
    }
    XCTAssertEqual(optimizer.step, Self.steps, file: file, line: line)
  }

  func testAdamFollowsKerasRule() {
    check(.adam, Self.adamKeras)
    check(OptimizerSettings(.adam, weightDecay: 0.1), Self.adamKeras)
  }

  func testAdamWFollowsTorch() {
    check(OptimizerSettings(.adamw), Self.adamW)
    check(OptimizerSettings(.adamw, weightDecay: 0.3), Self.adamW)
  }

  func testSGDFollowsTorch() {
    check(OptimizerSettings(.sgd), Self.sgd(momentum: 0, nesterov: false))
    check(OptimizerSettings(.sgd, weightDecay: 0.05), Self.sgd(momentum: 0, nesterov: false))
    check(OptimizerSettings(.sgd, momentum: 0.9), Self.sgd(momentum: 0.9, nesterov: false))
    check(
      OptimizerSettings(.sgd, momentum: 0.8, nesterov: true, weightDecay: 0.01), Self.sgd(momentum: 0.8, nesterov: true)
    )
  }

  /// Updating a buffer in pieces (as workers and ranks do) gives the bits of one update,
  /// and a restored optimizer continues with the same bits.
  func testRangesAndRestoreKeepTheBits() {
    let settings: [OptimizerSettings] = [
      .adam, OptimizerSettings(.adamw), OptimizerSettings(.sgd, momentum: 0.9, nesterov: true, weightDecay: 0.01),
    ]
    for setting in settings {
      let whole = setting.makeOptimizer(parameterCount: Self.count)
      let pieces = setting.makeOptimizer(parameterCount: Self.count)
      let a = AlignedFloats(count: Self.count)
      let b = AlignedFloats(count: Self.count)
      a.copy(from: randomFloats(Self.count, seed: 2))
      b.copy(from: a.array)
      let gradient = randomFloats(Self.count, seed: 3)
      for _ in 0..<2 {
        gradient.withUnsafeBufferPointer { g in
          whole.update(
            0..<Self.count, parameters: a.base, gradient: g.baseAddress!, gradientScale: 1, learningRate: 0.1,
            weightDecay: setting.weightDecay)
          for range in [0..<5, 5..<16, 16..<Self.count] {
            pieces.update(
              range, parameters: b.base, gradient: g.baseAddress!, gradientScale: 1, learningRate: 0.1,
              weightDecay: setting.weightDecay)
          }
        }
        whole.finishStep()
        pieces.finishStep()
      }
      XCTAssertEqual(a.array, b.array, "\(setting)")
      let restored = setting.makeOptimizer(parameterCount: Self.count)
      restored.restore(step: whole.step, state: whole.state.map(\.array))
      gradient.withUnsafeBufferPointer { g in
        for optimizer in [whole, restored] {
          let p = optimizer === whole ? a : b
          optimizer.update(
            0..<Self.count, parameters: p.base, gradient: g.baseAddress!, gradientScale: 1, learningRate: 0.05,
            weightDecay: setting.weightDecay)
        }
      }
      XCTAssertEqual(a.array, b.array, "\(setting) restored")
      XCTAssertEqual(restored.stateNames, whole.stateNames)
    }
  }

  /// Settings read back from their text; bad ones are refused in one line.
  func testSettingsTextRoundTripsAndBadSettingsAreRefused() throws {
    let settings: [OptimizerSettings] = [
      .adam, OptimizerSettings(.adam, weightDecay: 1e-4), OptimizerSettings(.adamw),
      OptimizerSettings(.adamw, weightDecay: 0), OptimizerSettings(.sgd, momentum: 0.9, nesterov: true),
      OptimizerSettings(.sgd, momentum: 0.9, weightDecay: 5e-4, decaysNormsAndBiases: false),
    ]
    for setting in settings {
      XCTAssertEqual(try OptimizerSettings(parsing: setting.description), setting, setting.description)
    }
    XCTAssertEqual(OptimizerSettings(.adamw).weightDecay, 0.01)
    XCTAssertEqual(
      OptimizerSettings(.sgd, momentum: 0.9).makeOptimizer(parameterCount: 1).stateNames, ["momentum_buffer"])
    XCTAssertEqual(OptimizerSettings(.sgd).makeOptimizer(parameterCount: 1).stateNames, [])
    for (bad, message) in [
      (OptimizerSettings(.adam, momentum: 0.9), "momentum is SGD's"),
      (OptimizerSettings(.sgd, nesterov: true), "nesterov needs"),
      (OptimizerSettings(.sgd, momentum: 1), "momentum must be"),
      (OptimizerSettings(.sgd, weightDecay: -1), "weightDecay must be"),
    ] {
      XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".hasPrefix(message), "\($0)") }
    }
    XCTAssertThrowsError(try OptimizerSettings(parsing: "lion")) {
      XCTAssertTrue("\($0)".contains("unknown optimizer"))
    }
    for bad in [
      "adam =", "sgd momentum=", "sgd =0.9", "sgd nesterov=1", "adamw weight_decay=x", "sgd momentum=0.9 shiny",
    ] {
      XCTAssertThrowsError(try OptimizerSettings(parsing: bad), bad)
    }
  }

  /// With weight decay off for biases and norms, only the multi-dimensional tensors decay,
  /// and a range is cut where that changes.
  func testNoDecayForBiasesAndNorms() throws {
    let plan = try ModelPlan(ModelDefinition(parsing: "input 8x8x1, conv 16 3x3, batchnorm, relu, flatten, dense 10"))
    let settings = OptimizerSettings(.sgd, weightDecay: 0.1, decaysNormsAndBiases: false)
    let pieces = settings.weightDecays(in: 0..<plan.parameterCount, tensors: plan.tensors)
    XCTAssertEqual(pieces.map(\.range.lowerBound).first, 0)
    XCTAssertEqual(pieces.last?.range.upperBound, plan.parameterCount)
    for tensor in plan.tensors {
      let piece = try XCTUnwrap(pieces.first { $0.range.contains(tensor.offset) })
      XCTAssertEqual(piece.weightDecay, tensor.shape.count > 1 ? 0.1 : 0, tensor.name)
    }
    XCTAssertEqual(
      OptimizerSettings(.sgd, weightDecay: 0.1).weightDecays(in: 3..<plan.parameterCount, tensors: plan.tensors)
        .map(\.range), [3..<plan.parameterCount])
  }
}
