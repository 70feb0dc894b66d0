import Foundation
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// A training step allocates no heap memory: the kernels' scratch lives in each replica's
/// arena or on the stack (`withUnsafeTemporaryAllocation` puts more than 1 KB on the heap,
/// which once cost `cifar-cnn` 21,824 `posix_memalign`/`free` pairs per step).
///
/// The test counts the `ptrain` binary's `malloc`, `posix_memalign` and `aligned_alloc`
/// calls with a shim loaded by `LD_PRELOAD`, compiled here with the toolchain's C compiler,
/// over `ptrain bench` runs of 10 and 110 timed steps of every built-in model: the extra 100
/// steps may add only the few allocations of the report's growing arrays, not one per step.
final class AllocationTests: XCTestCase {
  /// Counts allocation calls and writes the total to `$PTRAIN_ALLOCATION_COUNT` at exit.
  static let shim = """
    #define _GNU_SOURCE
    #include <dlfcn.h>
    #include <stdio.h>
    #include <stdlib.h>
    static long calls;
    static void count(void) { __atomic_fetch_add(&calls, 1, __ATOMIC_RELAXED); }
    void *malloc(size_t size) {
      static void *(*real)(size_t);
      if (!real) real = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
      count();
      return real(size);
    }
    int posix_memalign(void **pointer, size_t alignment, size_t size) {
      static int (*real)(void **, size_t, size_t);
      if (!real) real = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
      count();
      return real(pointer, alignment, size);
    }
    void *aligned_alloc(size_t alignment, size_t size) {
      static void *(*real)(size_t, size_t);
      if (!real) real = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
      count();
      return real(alignment, size);
    }
    __attribute__((destructor)) static void report(void) {
      const char *path = getenv("PTRAIN_ALLOCATION_COUNT");
      FILE *file = path ? fopen(path, "w") : NULL;
      if (file) { fprintf(file, "%ld\\n", __atomic_load_n(&calls, __ATOMIC_RELAXED)); fclose(file); }
    }
    """

  func testTrainingStepsDoNotAllocate() throws {
    // A sanitizer's runtime, linked into this test and the binary, replaces malloc before
    // any preloaded library could see it.
    let program = dlopen(nil, RTLD_NOW)
    if dlsym(program, "__asan_init") != nil || dlsym(program, "__tsan_init") != nil {
      throw XCTSkip("the sanitizer's allocator serves every allocation; the uninstrumented suite counts them")
    }
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let source = directory.appendingPathComponent("count-allocations.c")
    let library = directory.appendingPathComponent("count-allocations.so")
    try Self.shim.write(to: source, atomically: true, encoding: .utf8)
    let compiler = try XCTUnwrap(Self.executable(named: ["clang", "cc"]), "no C compiler (clang, cc) on PATH")
    let build = try runProcess(
      compiler, ["-O2", "-shared", "-fPIC", "-o", library.path, source.path, "-ldl"], in: nil, timeout: 120)
    XCTAssertEqual(build.status, 0, build.stderr)

    /// The allocation calls of one `ptrain bench` run of `steps` timed steps.
    func allocations(model: String, steps: Int) throws -> Int {
      let counted = directory.appendingPathComponent("\(model)-\(steps).count")
      let run = try runProcess(
        ptrainBinary,
        ["bench", "--model", model, "--threads", "2", "--batch-size", "8", "--steps", "\(steps)", "--json"],
        environment: ["LD_PRELOAD": library.path, "PTRAIN_ALLOCATION_COUNT": counted.path], in: nil, timeout: 300)
      XCTAssertEqual(run.status, 0, run.stderr)
      let text = try String(contentsOf: counted, encoding: .utf8)
      return try XCTUnwrap(Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), text)
    }
    for model in ["mnist-cnn", "fashion-cnn", "cifar-cnn", "resnet-20"] {
      let short = try allocations(model: model, steps: 10)
      let long = try allocations(model: model, steps: 110)
      XCTAssertGreaterThan(short, 1000, "\(model): the shim saw too few allocations to be counting them")
      XCTAssertLessThan(long - short, 50, "\(model): 100 more steps made \(long - short) more heap allocations")
    }
  }

  /// The first of `names` found on `PATH`.
  static func executable(named names: [String]) -> URL? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    for name in names {
      for directory in path.split(separator: ":") {
        let candidate = URL(fileURLWithPath: String(directory)).appendingPathComponent(name)
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
      }
    }
    return nil
  }
}
