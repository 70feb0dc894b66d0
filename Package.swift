// swift-tools-version: 6.1
import PackageDescription

/// Release builds of the engine trade bounds checks for speed; the tests run the same
/// code in release, so every kernel is still checked against its naive reference.
///
/// The vector level is portable AVX2 + FMA (`x86-64-v3`) unless the environment sets
/// `PTRAIN_MARCH=x86-64-v4` (AVX-512), which measured about 30% faster on Zen 5 but only
/// runs on AVX-512 machines. ptrain checks at start-up that the CPU has what it was built for.
///
/// `PTRAIN_CHECKED=1` keeps the bounds, overflow and exclusivity checks in release
/// (`-O`): the AddressSanitizer run of `tools/sanitize` builds so, to check the optimised
/// kernels as debug would, at release speed.
let vectorLevel = Context.environment["PTRAIN_MARCH"] ?? "x86-64-v3"
let uncheckedFlags =
  Context.environment["PTRAIN_CHECKED"] == "1" ? [] : ["-Ounchecked", "-enforce-exclusivity=unchecked"]
var engineSettings: [SwiftSetting] = []
#if arch(x86_64)
  engineSettings.append(
    .unsafeFlags(
      uncheckedFlags + ["-Xcc", "-march=\(vectorLevel)", "-Xcc", "-fno-math-errno"],
      .when(configuration: .release)))
  if vectorLevel == "x86-64-v4" {
    engineSettings.append(.define("PTRAIN_AVX512", .when(configuration: .release)))
  }
#endif

let package = Package(
  name: "ptrain",
  platforms: [.macOS(.v15)],
  products: [
    .library(name: "PTrain", targets: ["PTrain"]),
    .executable(name: "ptrain", targets: ["ptrain"]),
  ],
  traits: [
    .trait(
      name: "MPI",
      description:
        "Data parallelism across processes with Open MPI (mpirun -np P ptrain): needs libopenmpi-dev (pkg-config ompi-c)"
    )
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    // `swift package generate-documentation --target PTrain` builds the DocC catalog.
    .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
  ],
  targets: [
    .systemLibrary(
      name: "CHwloc", pkgConfig: "hwloc",
      providers: [.apt(["libhwloc-dev"]), .brew(["hwloc"])]),
    .systemLibrary(
      name: "CMPI", pkgConfig: "ompi-c",
      providers: [.apt(["libopenmpi-dev"])]),
    .systemLibrary(
      name: "CZlib", pkgConfig: "zlib",
      providers: [.apt(["zlib1g-dev"])]),
    .systemLibrary(
      name: "CPNG", pkgConfig: "libpng",
      providers: [.apt(["libpng-dev"]), .brew(["libpng"])]),
    .systemLibrary(
      name: "CTurboJPEG", pkgConfig: "libturbojpeg",
      providers: [.apt(["libturbojpeg0-dev"]), .brew(["jpeg-turbo"])]),
    // PNG and JPEG decoding in C: libpng reports errors by longjmp, which must not cross Swift frames.
    .target(name: "CImageCodecs", dependencies: ["CPNG", "CTurboJPEG"]),
    .target(
      name: "CMNIST",
      exclude: ["data"],
      cSettings: [.unsafeFlags(["-std=c23"])]),
    .target(
      name: "PTrain",
      dependencies: ["CHwloc", "CZlib", "CMNIST", "CImageCodecs", .target(name: "CMPI", condition: .when(traits: ["MPI"]))],
      swiftSettings: engineSettings),
    .executableTarget(
      name: "ptrain",
      dependencies: [
        "PTrain",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ]),
    .testTarget(
      name: "PTrainTests",
      dependencies: ["PTrain", "ptrain", "CZlib", "CTurboJPEG"],
      swiftSettings: engineSettings),
  ]
)
