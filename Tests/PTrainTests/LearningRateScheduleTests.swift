import XCTest

@testable import PTrain

/// The schedules against the rates PyTorch's schedulers give (printed by torch 2.15's
/// `OneCycleLR`, `CosineAnnealingLR` and `MultiStepLR`, stepped once per optimizer step or
/// epoch, for a base rate of 0.1 over 10 steps) and against the documented warm-up.
final class LearningRateScheduleTests: XCTestCase {
  /// Equal to float rounding: PyTorch's base rate is the Double 0.1, ptrain's the Float.
  func assertRates(_ got: [Float], _ expected: [Double], file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(got.count, expected.count, file: file, line: line)
    for (index, (a, e)) in zip(got, expected).enumerated() {
      XCTAssertEqual(Double(a), e, accuracy: abs(e) * 1e-6, "step \(index)", file: file, line: line)
    }
  }

  func rates(_ schedule: LearningRateSchedule, steps: Int = 10, perEpoch: Int = 10) -> [Float] {
    (0..<steps).map { schedule.rate(base: 0.1, step: $0, totalSteps: steps, stepsPerEpoch: perEpoch) }
  }

  func testSchedulesMatchPyTorch() throws {
    let oneCycle: [Double] = [
      0.0040000000000000036, 0.052000000000000005, 0.1, 0.09504846320134738, 0.0811745653949763,
      0.06112620219362893, 0.03887419780637107, 0.0188258346050237, 0.004951936798652629, 4e-07,
    ]
    let cosine: [Double] = [
      0.1, 0.09755282581475769, 0.09045084971874738, 0.07938926261462367, 0.06545084971874739,
      0.05000000000000001, 0.03454915028125264, 0.020610737385376353, 0.009549150281252635, 0.002447174185242324,
    ]
    let multiStep: [Double] = [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025]
    assertRates(rates(try LearningRateSchedule(parsing: "onecycle")), oneCycle)
    assertRates(rates(try LearningRateSchedule(parsing: "cosine")), cosine)
    assertRates(rates(try LearningRateSchedule(parsing: "step:1,3:0.5"), steps: 12, perEpoch: 3), multiStep)
    XCTAssertEqual(rates(.constant), [Float](repeating: 0.1, count: 10), "the base rate's bits")
  }

  /// Warm-up: step t < N at rate × (t + 1) / N, then the schedule over the steps left.
  func testWarmupThenTheRestOfTheRun() throws {
    let warm = try LearningRateSchedule(parsing: "cosine", warmupSteps: 4)
    let got = rates(warm, steps: 14)
    assertRates(Array(got.prefix(4)), [0.025, 0.05, 0.075, 0.1])
    XCTAssertEqual(Array(got.dropFirst(4)), rates(try LearningRateSchedule(parsing: "cosine"), steps: 10))
    let stepped = rates(try LearningRateSchedule(parsing: "step:2", warmupSteps: 2), steps: 6, perEpoch: 2)
    assertRates(stepped, [0.05, 0.1, 0.1, 0.1, 0.01, 0.01])
  }

  func testTextRoundTripsAndBadTextIsRefused() throws {
    for text in ["constant", "cosine", "onecycle", "step:30,60", "step:5:0.5"] {
      XCTAssertEqual(try LearningRateSchedule(parsing: text).description, text)
    }
    XCTAssertEqual(try LearningRateSchedule(parsing: "step:30,60:0.1").description, "step:30,60")
    for bad in ["linear", "step", "step:", "step:3,2", "step:0", "step:2:-1", "step:2:x", "cosine:3", "step:2,,3"] {
      XCTAssertThrowsError(try LearningRateSchedule(parsing: bad), bad) {
        XCTAssertTrue("\($0)".contains("schedule '\(bad)'"), "\($0)")
      }
    }
  }
}
