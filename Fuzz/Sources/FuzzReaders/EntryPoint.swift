@_spi(Fuzzing) import PTrain

#if canImport(Glibc)
  import Glibc
#endif

/// The reader under test, chosen once by PTRAIN_FUZZ_TARGET: `idx` (the IDX/gzip reader)
/// `safetensors` (the JSON parser, the safetensors reader and the checkpoint loader) or
/// `finetune` (a checkpoint and a model text, as `ptrain finetune` meets them) or `image`
/// (the PNG and JPEG decoders and the resize).
/// A global outside main.swift, so it is initialised on first use whichever `main` runs.
let fuzzTarget: @Sendable ([UInt8]) -> Void = {
  switch getenv("PTRAIN_FUZZ_TARGET").map({ String(cString: $0) }) {
  case "idx": return FuzzEntryPoints.idx
  case "safetensors": return FuzzEntryPoints.safetensors
  case "finetune": return FuzzEntryPoints.finetune
  case "image": return FuzzEntryPoints.image
  default:
    let usage = "FuzzReaders: set PTRAIN_FUZZ_TARGET to idx, safetensors, finetune or image\n"
    _ = usage.withCString { write(2, $0, strlen($0)) }
    exit(64)
  }
}()

/// libFuzzer's entry point: feeds one input to `fuzzTarget`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
  fuzzTarget(start.map { Array(UnsafeBufferPointer(start: $0, count: count)) } ?? [])
  return 0
}

/// libFuzzer calls this once before any input. Choosing the target here means a missing
/// or wrong PTRAIN_FUZZ_TARGET exits with its usage line before fuzzing starts; from
/// inside `LLVMFuzzerTestOneInput`, libFuzzer would count that exit as a crash and write
/// the input as a `crash-…` artifact.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(
  _ argc: UnsafeMutablePointer<CInt>?,
  _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?
) -> CInt {
  _ = fuzzTarget
  return 0
}
