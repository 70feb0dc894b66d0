import Foundation
import XCTest

/// The program README shows under "Embed the engine in a Swift program", taken from
/// README itself, built and run in a throwaway package that depends on this one by path,
/// as a new user's would, twice over: as one executable in the Swift 6 language mode (the
/// default of tools-version 6.1, where top-level code is main-actor isolated) and as one
/// in Swift 5 mode. One release build of the engine serves both, about half a minute.
final class EmbeddingExampleTests: XCTestCase {
  func testReadmeExampleRunsInSwift6AndSwift5Modes() throws {
    try checkExamples()
  }

  /// The DocC article "Embedding ptrain" shows the same program, word for word.
  func testDocCArticleShowsReadmesExample() throws {
    let article = try String(
      contentsOf: packageRoot.appendingPathComponent("Sources/PTrain/PTrain.docc/EmbeddingPTrain.md"), encoding: .utf8)
    XCTAssertTrue(
      article.contains("```swift\n" + (try Self.readmeExample()) + "```\n"),
      "the article's example differs from README's")
  }

  /// README's example: the Swift block that begins with `import PTrain` in the section
  /// "Embed the engine in a Swift program".
  static func readmeExample() throws -> String {
    let readme = try String(contentsOf: packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
    let section = try XCTUnwrap(
      readme.components(separatedBy: "### Embed the engine in a Swift program").dropFirst().first,
      "README has no section \"Embed the engine in a Swift program\"")
    let blocks = section.components(separatedBy: "```swift\n").dropFirst().map {
      $0.components(separatedBy: "\n```").first ?? ""
    }
    return try XCTUnwrap(blocks.first { $0.hasPrefix("import PTrain\n") }, "no example that imports PTrain") + "\n"
  }

  /// The package's executables: each name, and the Swift settings its target adds.
  private static let examples = [
    (name: "Swift6Example", settings: ""),
    (name: "Swift5Example", settings: ", swiftSettings: [.swiftLanguageMode(.v5)]"),
  ]

  /// Writes a package with README's example as the `main.swift` of each of `examples`,
  /// builds it in release, runs each and checks what it prints.
  private func checkExamples() throws {
    let package = try makeTemporaryDirectory().appendingPathComponent("example")
    defer { try? FileManager.default.removeItem(at: package.deletingLastPathComponent()) }
    var targets: [String] = []
    for example in Self.examples {
      let sources = package.appendingPathComponent("Sources/\(example.name)")
      try FileManager.default.createDirectory(at: sources, withIntermediateDirectories: true)
      try Self.readmeExample().write(
        to: sources.appendingPathComponent("main.swift"), atomically: true, encoding: .utf8)
      targets.append(
        ".executableTarget(name: \"\(example.name)\", dependencies: [.product(name: \"PTrain\", package: \"ptrain\")]\(example.settings))"
      )
    }
    let manifest = """
      // swift-tools-version: 6.1
      import PackageDescription

      let package = Package(
        name: "Example",
        platforms: [.macOS(.v15)],
        dependencies: [.package(name: "ptrain", path: "\(packageRoot.path)")],
        targets: [
          \(targets.joined(separator: ",\n    "))
        ]
      )

      """
    try manifest.write(to: package.appendingPathComponent("Package.swift"), atomically: true, encoding: .utf8)

    let build = try runProcess(
      URL(fileURLWithPath: "/bin/sh"),
      ["-c", "swift build -c release > build.log 2>&1 || { tail -n 40 build.log; exit 1; }"],
      in: package, timeout: 1200)
    XCTAssertEqual(build.status, 0, "swift build failed:\n\(build.stdout)")
    guard build.status == 0 else { return }
    let log = try String(contentsOf: package.appendingPathComponent("build.log"), encoding: .utf8)
    let warnings = log.split(separator: "\n").filter { $0.contains("warning:") && !$0.contains("/.build/checkouts/") }
    XCTAssertEqual(warnings, [], "the examples build with warnings")
    for example in Self.examples {
      try checkOutput(of: package.appendingPathComponent(".build/release/\(example.name)"), in: package)
    }
  }

  /// Runs one build of README's example and checks what it prints: an epoch line, the
  /// test accuracy (above 75%), the model's text and the first layer's weight shape in ptrain's and PyTorch's layouts.
  private func checkOutput(of executable: URL, in package: URL) throws {
    let name = executable.lastPathComponent
    let result = try runProcess(executable, [], in: package, timeout: 600)
    print("\(name), README's example prints:\n\(result.stdout)", terminator: "")
    XCTAssertEqual(result.status, 0, "\(name): exit \(result.status), stderr: \(result.stderr)")
    let lines = result.stdout.split(separator: "\n").map(String.init)
    XCTAssertEqual(lines.count, 4, result.stdout)
    XCTAssertTrue(lines.first?.hasPrefix("epoch 1: ") ?? false, result.stdout)
    let accuracy = try XCTUnwrap(
      lines.dropFirst().first?.split(separator: " ").dropFirst(2).first.flatMap { Double($0) })
    XCTAssertGreaterThan(accuracy, 0.75, result.stdout)
    XCTAssertEqual(
      lines.dropFirst(2).first,
      "input 28x28x1, conv 16 3x3 same, batchnorm, relu, maxpool 2, conv 32 3x3, relu, maxpool 2, flatten, dropout 0.25, dense 10"
    )
    XCTAssertTrue(lines.last?.hasPrefix("[3, 3, 1, 16] [16, 1, 3, 3] ") ?? false, result.stdout)
  }
}
