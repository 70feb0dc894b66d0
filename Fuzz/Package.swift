// swift-tools-version: 6.1
import PackageDescription

/// libFuzzer targets for ptrain's readers. They build only with the fuzzer runtime, which
/// supplies `main`, so this is a package of its own; `tools/fuzz` builds and runs them:
/// `swift build --package-path Fuzz -Xswiftc -sanitize=fuzzer,address`.
let package = Package(
  name: "ptrain-fuzz",
  platforms: [.macOS(.v15)],
  dependencies: [.package(name: "ptrain", path: "..")],
  targets: [
    .executableTarget(
      name: "FuzzIDX", dependencies: [.product(name: "PTrain", package: "ptrain")]),
    .executableTarget(
      name: "FuzzSafeTensors", dependencies: [.product(name: "PTrain", package: "ptrain")]),
  ],
  swiftLanguageModes: [.v5]
)
