import PTrain

#if canImport(Glibc)
  import Glibc
#endif

// libFuzzer feeds every input to `LLVMFuzzerTestOneInput`, which hands it to the reader
// that PTRAIN_FUZZ_TARGET names (see EntryPoint.swift). Whichever `main` the linker keeps
// (libFuzzer's own, or this file's, which SwiftPM renames) ends up in libFuzzer's driver.

@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(
  _ argc: UnsafeMutablePointer<CInt>,
  _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
  _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(runFuzzerDriver(&argc, &argv) { start, count in fuzzOneInput(start, count) })
