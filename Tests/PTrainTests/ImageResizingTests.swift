import XCTest

@testable import PTrain

/// The bilinear resize against a plain two-dimensional reference of Pillow's formula.
final class ImageResizingTests: XCTestCase {
  /// Pillow's triangle filter weight of source coordinate `source` for output
  /// coordinate `output`, normalised over the taps inside the image: the formula of its
  /// `precompute_coeffs`, written out for one pair.
  func weight(source: Int, output: Int, from inputSize: Int, to outputSize: Int) -> Double {
    let scale = Double(inputSize) / Double(outputSize)
    let filterScale = max(scale, 1)
    let center = (Double(output) + 0.5) * scale
    let low = max(Int(center - filterScale + 0.5), 0)
    let high = min(Int(center + filterScale + 0.5), inputSize)
    func tent(_ s: Int) -> Double { max(0, 1 - abs((Double(s) - center + 0.5) / filterScale)) }
    guard (low..<high).contains(source) else { return 0 }
    return tent(source) / (low..<high).map(tent).reduce(0, +)
  }

  func testTapsAreThoseOfPillowsBilinearFilter() {
    // Halving 4 pixels: output 0 is centred on 1.0 and reads sources 0, 1 and 2 with a
    // tent two pixels wide: 0.75, 0.75, 0.25 before normalising.
    let taps = ImageResizing.taps(from: 4, to: 2)
    XCTAssertEqual(taps.first[0], 0)
    XCTAssertEqual(taps.counts[0], 3)
    for (k, expected) in [0.75, 0.75, 0.25].enumerated() {
      XCTAssertEqual(Double(taps.weights[k]), expected / 1.75, accuracy: 1e-6)
    }
  }

  func testResizeMatchesTheTwoDimensionalReference() {
    var generator = SeededGenerator(seed: 7)
    for (from, to) in [
      (ImageShape(height: 7, width: 9, channels: 3), ImageShape(height: 4, width: 5, channels: 3)),
      (ImageShape(height: 5, width: 4, channels: 1), ImageShape(height: 11, width: 9, channels: 1)),
      (ImageShape(height: 30, width: 8, channels: 2), ImageShape(height: 6, width: 13, channels: 2)),
    ] {
      let source = (0..<from.count).map { _ in UInt8.random(in: 0...255, using: &generator) }
      var resized = [UInt8](repeating: 0, count: to.count)
      source.withUnsafeBufferPointer { source in
        resized.withUnsafeMutableBufferPointer {
          ImageResizing.resize(source.baseAddress!, from: from, into: $0.baseAddress!, to: to)
        }
      }
      for y in 0..<to.height {
        for x in 0..<to.width {
          for c in 0..<to.channels {
            var sum = 0.0
            for sy in 0..<from.height {
              for sx in 0..<from.width {
                sum +=
                  weight(source: sy, output: y, from: from.height, to: to.height)
                  * weight(source: sx, output: x, from: from.width, to: to.width)
                  * Double(source[(sy * from.width + sx) * from.channels + c])
              }
            }
            let expected = min(max(sum.rounded(), 0), 255)
            XCTAssertEqual(
              Double(resized[(y * to.width + x) * to.channels + c]), expected, accuracy: 1,
              "\(from) → \(to) at (\(y), \(x), \(c))")
          }
        }
      }
    }
  }

  func testSameSizeIsACopyAndAFlatImageStaysFlat() {
    let shape = ImageShape(height: 3, width: 4, channels: 3)
    let image = (0..<shape.count).map { UInt8($0 * 7 % 256) }
    var copy = [UInt8](repeating: 0, count: shape.count)
    image.withUnsafeBufferPointer { source in
      copy.withUnsafeMutableBufferPointer {
        ImageResizing.resize(source.baseAddress!, from: shape, into: $0.baseAddress!, to: shape)
      }
    }
    XCTAssertEqual(copy, image)
    let flat = [UInt8](repeating: 93, count: 10 * 10)
    var small = [UInt8](repeating: 0, count: 3 * 7)
    flat.withUnsafeBufferPointer { source in
      small.withUnsafeMutableBufferPointer {
        ImageResizing.resize(
          source.baseAddress!, from: ImageShape(height: 10, width: 10, channels: 1), into: $0.baseAddress!,
          to: ImageShape(height: 3, width: 7, channels: 1))
      }
    }
    XCTAssertEqual(small, [UInt8](repeating: 93, count: 21))
  }
}
