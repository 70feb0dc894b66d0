// swift-tools-version: 6.1
import PackageDescription

/// The libFuzzer binary for ptrain's readers. It builds only with the fuzzer runtime, so
/// this is a package of its own; `tools/fuzz` builds and runs it:
/// `swift build --package-path Fuzz -Xswiftc -sanitize=fuzzer,address`.
let package = Package(
  name: "ptrain-fuzz",
  platforms: [.macOS(.v15)],
  dependencies: [.package(name: "ptrain", path: "..")],
  targets: [
    // One binary for both readers; tools/fuzz picks one with PTRAIN_FUZZ_TARGET.
    .executableTarget(name: "FuzzReaders", dependencies: [.product(name: "PTrain", package: "ptrain")])
  ]
)
