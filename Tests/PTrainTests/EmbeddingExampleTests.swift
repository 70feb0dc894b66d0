import Foundation
import XCTest

/// The program README shows under "Embed the engine in a Swift program", taken from
/// README itself, built and run in two throwaway packages that depend on this one by path,
/// as a new user's would: one in the Swift 6 language mode (the default of tools-version
/// 6.1, where top-level code is main-actor isolated) and one in Swift 5 mode. Each is a
/// release build of the engine, about a minute or two.
final class EmbeddingExampleTests: XCTestCase {
  func testReadmeExampleRunsInASwift6Package() throws {
    try checkExample(in: "swift6", languageModes: nil)
  }

  func testReadmeExampleRunsInASwift5Package() throws {
    try checkExample(in: "swift5", languageModes: "[.v5]")
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

  /// Writes a package with README's example as its `main.swift` and `languageModes` as
  /// its `swiftLanguageModes` (the default when nil), builds it in release, runs it and
  /// checks what it prints.
  private func checkExample(in name: String, languageModes: String?) throws {
    let package = try makeTemporaryDirectory().appendingPathComponent(name)
    let sources = package.appendingPathComponent("Sources/Example")
    try FileManager.default.createDirectory(at: sources, withIntermediateDirectories: true)
    let modes = languageModes.map { ",\n  swiftLanguageModes: \($0)" } ?? ""
    let manifest = """
      // swift-tools-version: 6.1
      import PackageDescription

      let package = Package(
        name: "Example",
        platforms: [.macOS(.v15)],
        dependencies: [.package(name: "ptrain", path: "\(packageRoot.path)")],
        targets: [
          .executableTarget(name: "Example", dependencies: [.product(name: "PTrain", package: "ptrain")])
        ]\(modes)
      )

      """
    try manifest.write(to: package.appendingPathComponent("Package.swift"), atomically: true, encoding: .utf8)
    try Self.readmeExample().write(to: sources.appendingPathComponent("main.swift"), atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(at: package.deletingLastPathComponent()) }

    let build = try runProcess(
      URL(fileURLWithPath: "/bin/sh"),
      ["-c", "swift build -c release > build.log 2>&1 || { tail -n 40 build.log; exit 1; }"],
      in: package, timeout: 1200)
    XCTAssertEqual(build.status, 0, "\(name): swift build failed:\n\(build.stdout)")
    guard build.status == 0 else { return }
    let log = try String(contentsOf: package.appendingPathComponent("build.log"), encoding: .utf8)
    let warnings = log.split(separator: "\n").filter { $0.contains("warning:") && !$0.contains("/.build/checkouts/") }
    XCTAssertEqual(warnings, [], "\(name): the example builds with warnings")

    let result = try runProcess(
      package.appendingPathComponent(".build/release/Example"), [], in: package, timeout: 600)
    print("\(name) package, README's example prints:\n\(result.stdout)", terminator: "")
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
    XCTAssertTrue(lines.last?.hasPrefix("[3, 3, 1, 16] ") ?? false, result.stdout)
  }
}
