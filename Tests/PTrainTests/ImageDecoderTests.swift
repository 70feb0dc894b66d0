import Foundation
import XCTest

@testable import PTrain

/// PNG and JPEG decoding: every colour type becomes gray or RGB as Pillow's convert does,
/// and a broken file is one line naming it.
final class ImageDecoderTests: XCTestCase {
  let (width, height) = (3, 2)

  func decoded(_ file: [UInt8], channels: Int) throws -> [UInt8] {
    let header = try ImageDecoder.header(of: file, path: "x.png")
    XCTAssertEqual([header.width, header.height], [width, height])
    var pixels = [UInt8](repeating: 0, count: width * height * channels)
    try pixels.withUnsafeMutableBufferPointer {
      try ImageDecoder.decode(
        file, header: header, path: "x.png", into: $0.baseAddress!,
        shape: ImageShape(height: height, width: width, channels: channels))
    }
    return pixels
  }

  /// Pillow's convert("L"): ITU-R 601-2 luma in 16-bit fixed point.
  func luma(_ r: Int, _ g: Int, _ b: Int) -> UInt8 { UInt8((19595 * r + 38470 * g + 7471 * b + 32768) >> 16) }

  func testPNGColourTypesBecomeGrayOrRGBAsPillowConvertsThem() throws {
    let pixels = width * height
    let rgb: [Int] = (0..<(pixels * 3)).map { ($0 * 37 + 11) % 256 }
    let gray: [Int] = (0..<pixels).map { ($0 * 41 + 3) % 256 }
    let lumaOfRGB: [UInt8] = (0..<pixels).map { pixel -> UInt8 in
      luma(rgb[3 * pixel], rgb[3 * pixel + 1], rgb[3 * pixel + 2])
    }
    let rgbFile = ImageFixtures.png(width: width, height: height, color: .rgb, samples: rgb)
    XCTAssertEqual(try decoded(rgbFile, channels: 3), rgb.map(UInt8.init))
    XCTAssertEqual(try decoded(rgbFile, channels: 1), lumaOfRGB)
    XCTAssertFalse(try ImageDecoder.header(of: rgbFile, path: "x").gray)

    var rgba: [Int] = []
    for pixel in 0..<pixels {
      rgba += rgb[(3 * pixel)..<(3 * pixel + 3)]
      rgba.append(pixel * 50 % 256)
    }
    let rgbaFile = ImageFixtures.png(width: width, height: height, color: .rgba, samples: rgba)
    XCTAssertEqual(try decoded(rgbaFile, channels: 3), rgb.map(UInt8.init), "alpha is dropped, not composited")

    let grayFile = ImageFixtures.png(width: width, height: height, color: .gray, samples: gray)
    XCTAssertTrue(try ImageDecoder.header(of: grayFile, path: "x").gray)
    XCTAssertEqual(try decoded(grayFile, channels: 1), gray.map(UInt8.init))
    let grayRGB: [UInt8] = gray.flatMap { value -> [UInt8] in [UInt8(value), UInt8(value), UInt8(value)] }
    XCTAssertEqual(try decoded(grayFile, channels: 3), grayRGB)

    let grayAlpha: [Int] = gray.enumerated().flatMap { index, value -> [Int] in [value, index * 40 % 256] }
    let grayAlphaFile = ImageFixtures.png(width: width, height: height, color: .grayAlpha, samples: grayAlpha)
    XCTAssertTrue(try ImageDecoder.header(of: grayAlphaFile, path: "x").gray)
    XCTAssertEqual(try decoded(grayAlphaFile, channels: 1), gray.map(UInt8.init))

    let deep: [Int] = gray.enumerated().map { index, value -> Int in value << 8 | (index * 77 % 256) }
    let deepFile = ImageFixtures.png(width: width, height: height, color: .gray, bitDepth: 16, samples: deep)
    XCTAssertEqual(try decoded(deepFile, channels: 1), gray.map(UInt8.init), "16-bit samples keep their high byte")
    let deepRGB: [Int] = rgb.enumerated().map { index, value -> Int in value << 8 | (index * 13 % 256) }
    let deepRGBFile = ImageFixtures.png(width: width, height: height, color: .rgb, bitDepth: 16, samples: deepRGB)
    XCTAssertEqual(try decoded(deepRGBFile, channels: 3), rgb.map(UInt8.init))

    let palette: [UInt8] = [10, 20, 30, 200, 100, 50, 0, 255, 0]
    let indices = (0..<pixels).map { $0 % 3 }
    let paletteFile = ImageFixtures.png(
      width: width, height: height, color: .palette, samples: indices, palette: palette)
    XCTAssertFalse(try ImageDecoder.header(of: paletteFile, path: "x").gray)
    let paletteRGB: [UInt8] = indices.flatMap { index -> [UInt8] in Array(palette[(3 * index)..<(3 * index + 3)]) }
    XCTAssertEqual(try decoded(paletteFile, channels: 3), paletteRGB)
    let paletteGray: [UInt8] = indices.map { index -> UInt8 in
      luma(Int(palette[3 * index]), Int(palette[3 * index + 1]), Int(palette[3 * index + 2]))
    }
    XCTAssertEqual(try decoded(paletteFile, channels: 1), paletteGray)

    let bits = (0..<pixels).map { $0 % 2 }
    let bitFile = ImageFixtures.png(width: width, height: height, color: .gray, bitDepth: 1, samples: bits)
    let bitBytes: [UInt8] = bits.map { $0 == 1 ? 255 : 0 }
    XCTAssertEqual(try decoded(bitFile, channels: 1), bitBytes, "1-bit gray is scaled to 8")
  }

  func testJPEGsDecodeThroughLibjpegTurbo() throws {
    let pixels = width * height
    let rgb: [UInt8] = (0..<(pixels * 3)).map { index -> UInt8 in
      let channel = index % 3
      return UInt8(100 + channel * 20 + index / 3 * 4)
    }
    let colour = ImageFixtures.jpeg(width: width, height: height, channels: 3, pixels: rgb)
    XCTAssertFalse(try ImageDecoder.header(of: colour, path: "x").gray)
    let asRGB = try decoded(colour, channels: 3)
    for (got, sent) in zip(asRGB, rgb) { XCTAssertEqual(Double(got), Double(sent), accuracy: 8, "lossy, but close") }
    let lumaOfDecoded: [UInt8] = (0..<pixels).map { pixel -> UInt8 in
      luma(Int(asRGB[3 * pixel]), Int(asRGB[3 * pixel + 1]), Int(asRGB[3 * pixel + 2]))
    }
    XCTAssertEqual(
      try decoded(colour, channels: 1), lumaOfDecoded, "gray from a colour JPEG is Pillow's luma of its RGB")

    let gray: [UInt8] = (0..<pixels).map { UInt8(60 + $0 * 10) }
    let grayFile = ImageFixtures.jpeg(width: width, height: height, channels: 1, pixels: gray)
    XCTAssertTrue(try ImageDecoder.header(of: grayFile, path: "x").gray)
    let asGray = try decoded(grayFile, channels: 1)
    for (got, sent) in zip(asGray, gray) { XCTAssertEqual(Double(got), Double(sent), accuracy: 8) }
    let spread: [UInt8] = asGray.flatMap { value -> [UInt8] in [value, value, value] }
    XCTAssertEqual(try decoded(grayFile, channels: 3), spread)
  }

  func testBrokenImagesAreOneLineNamingTheFile() throws {
    func refusal(_ file: [UInt8], decoding: Bool = true) -> String {
      do {
        _ = try decoded(file, channels: 3)
        return "decoded"
      } catch { return "\(error)" }
    }
    let rgb: [Int] = (0..<(width * height * 3)).map { $0 * 9 % 256 }
    let png = ImageFixtures.png(width: width, height: height, color: .rgb, samples: rgb)
    XCTAssertTrue(refusal(Array(png.prefix(png.count - 16))).hasPrefix("x.png: is not a valid PNG"), "truncated")
    var badCRC = png
    badCRC[29] ^= 0xFF  // IHDR's CRC
    XCTAssertTrue(refusal(badCRC).contains("CRC"), refusal(badCRC))
    let jpeg = ImageFixtures.jpeg(width: width, height: height, channels: 3, pixels: rgb.map(UInt8.init))
    let truncated = refusal(Array(jpeg.prefix(jpeg.count * 2 / 3)))
    XCTAssertTrue(truncated.hasPrefix("x.png: is not a valid JPEG"), truncated)
    XCTAssertEqual(
      refusal(Array("hello".utf8)), "x.png: is not a PNG or JPEG image (its first bytes are neither's signature)")
    XCTAssertFalse(refusal([]).contains("\n"))
    let huge = ImageFixtures.pngHeader(width: 100_000, height: 100_000)
    XCTAssertThrowsError(try ImageDecoder.header(of: huge, path: "big.png")) {
      XCTAssertTrue("\($0)".hasPrefix("big.png: is 100000 x 100000 pixels, more than"), "\($0)")
    }
  }

  func testImageExtensionsAreThoseTorchvisionReads() {
    for name in ["a.png", "b.JPG", "c.jpeg", "d.Png"] { XCTAssertTrue(ImageDecoder.hasImageExtension(name), name) }
    for name in ["notes.txt", ".png", "png", "e.gif", "f.png.bak"] {
      XCTAssertFalse(ImageDecoder.hasImageExtension(name), name)
    }
  }
}
