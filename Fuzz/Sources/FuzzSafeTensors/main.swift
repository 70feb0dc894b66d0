import PTrain

#if canImport(Glibc)
  import Glibc
#endif

// libFuzzer feeds every input to `FuzzEntryPoints.safetensors` through
// `LLVMFuzzerTestOneInput`. Whichever `main` the linker keeps (libFuzzer's own, or this
// file's, which SwiftPM renames) ends up in libFuzzer's driver.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
  FuzzEntryPoints.safetensors(start.map { Array(UnsafeBufferPointer(start: $0, count: count)) } ?? [])
  return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(
  _ argc: UnsafeMutablePointer<CInt>,
  _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
  _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(runFuzzerDriver(&argc, &argv, fuzzOneInput))
