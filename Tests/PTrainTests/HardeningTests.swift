import Foundation
import PTrain
import XCTest

/// Hostile and careless input through the binary: no file destroyed, no crash, no hang,
/// no lost run, and one line with the documented exit code for each.
final class HardeningTests: XCTestCase {
  let tiny = ["--train-limit", "320", "--epochs", "1", "--quiet"]

  /// Item 1: a device, a FIFO or a socket at `--save` is refused before training and left
  /// as it was; a symlink to a file is written through and stays a link.
  func testSaveRefusesSpecialFilesAndWritesThroughSymlinks() throws {
    let directory = try makeTemporaryDirectory()
    let device = directory.appendingPathComponent("device").path
    let fifo = directory.appendingPathComponent("fifo").path
    XCTAssertEqual(
      mknod(device, S_IFCHR | 0o600, dev_t(1 << 8 | 3)), 0, "mknod (major 1, minor 3) in the test's own directory")
    XCTAssertEqual(mkfifo(fifo, 0o600), 0)
    let socket = directory.appendingPathComponent("socket").path
    let descriptor = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
      for (index, byte) in socket.utf8.enumerated() { raw[index] = byte }
    }
    let bound = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
      }
    }
    XCTAssertEqual(bound, 0)
    defer { close(descriptor) }
    for (path, kind, mode) in [
      (device, "a character device", S_IFCHR), (fifo, "a FIFO", S_IFIFO), (socket, "a socket", S_IFSOCK),
    ] {
      let result = try runPTrain(tiny + ["--save", path])
      assertRefused(result, status: 64, "--save \(path): is \(kind), not a regular file")
      var info = stat()
      XCTAssertEqual(lstat(path, &info), 0)
      XCTAssertEqual(info.st_mode & S_IFMT, mode, "\(path) is still \(kind)")
    }
    let real = directory.appendingPathComponent("real.safetensors").path
    let link = directory.appendingPathComponent("link.safetensors").path
    XCTAssertTrue(FileManager.default.createFile(atPath: real, contents: Data()))
    try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "real.safetensors")
    XCTAssertEqual(try runPTrain(tiny + ["--save", link]).status, 0)
    XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: link), "real.safetensors")
    XCTAssertEqual(try Checkpoint(path: real).metadata["epochs_completed"], "1", "written through the link")
    let dangling = directory.appendingPathComponent("dangling").path
    try FileManager.default.createSymbolicLink(atPath: dangling, withDestinationPath: "nowhere/x")
    assertRefused(try runPTrain(tiny + ["--save", dangling]), status: 64, "a symbolic link to a missing file")
  }

  /// Item 2: Ctrl-C right after the last epoch's line no longer loses the run: the final
  /// checkpoint is written, and ptrain says so and exits 130. (If the signal lands after
  /// ptrain has finished, it exits 0; the checkpoint is complete either way.)
  func testInterruptAfterTheLastEpochStillSavesTheRun() throws {
    let directory = try makeTemporaryDirectory()
    let path = directory.appendingPathComponent("run.safetensors").path
    let result = try runPTrain(
      ["--train-limit", "3200", "--epochs", "1", "--save", path, "--json"], signals: [(SIGINT, "epoch 1 ")])
    XCTAssertTrue(result.status == 130 || result.status == 0, result.stderr)
    if result.status == 130 {
      XCTAssertTrue(
        result.stderr.contains("ptrain: interrupted after training finished; the final checkpoint is saved to \(path)"),
        result.stderr)
      XCTAssertTrue(result.stderr.contains("finishing the final checkpoint first"), result.stderr)
      XCTAssertEqual(try result.json()["checkpoint"] as? String, path, "the summary is printed too")
    }
    let saved = try Checkpoint(path: path)
    XCTAssertEqual(saved.metadata["epochs_completed"], "1")
    XCTAssertNotNil(saved.metadata["test_accuracy"])
  }

  /// Item 3: every `--save` path that cannot be written is refused before training.
  func testBadSavePathsAreRefusedBeforeTraining() throws {
    let directory = try makeTemporaryDirectory()
    let file = directory.appendingPathComponent("afile").path
    XCTAssertTrue(FileManager.default.createFile(atPath: file, contents: Data("x".utf8)))
    let cases: [(String, String)] = [
      (file + "/x.safetensors", "a parent of it is not a directory"),
      ("", "--save \"\": the path is empty"),
      (directory.path + "/new/", "ends in /, so it names a directory"),
      (
        directory.path + "/missing/x.safetensors",
        "cannot create a file in \(directory.path)/missing: no such directory"
      ),
      (directory.path, "is a directory"),
    ]
    for (path, fragment) in cases {
      assertRefused(try runPTrain(tiny + ["--save", path]), status: 64, fragment)
    }
    // A name whose temporary file `.NAME.tmp-PID` would pass 255 bytes still saves.
    let long = directory.appendingPathComponent(String(repeating: "a", count: 250)).path
    XCTAssertEqual(try runPTrain(tiny + ["--save", long]).status, 0)
    XCTAssertNoThrow(try Checkpoint(path: long))
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path).count, 2, "no temporary left")
  }

  /// Item 3: a filesystem where no file can be created is refused before training, even
  /// where `access(W_OK)` says yes (root ignores permission bits; `/proc` behaves so):
  /// small tmpfs mounts this test makes under its own directory, one read-only and one
  /// without a free inode.
  func testSaveWhereNoFileCanBeCreatedIsRefusedBeforeTraining() throws {
    for (options, flags, reason) in [
      ("size=64k", UInt(MS_RDONLY), "Read-only file system"),
      ("size=64k,nr_inodes=1", UInt(0), "No space left on device"),
    ] {
      let mountPoint = try makeTemporaryDirectory()
      guard mount("tmpfs", mountPoint.path, "tmpfs", flags, options) == 0 else {
        throw XCTSkip("cannot mount a tmpfs here: \(String(cString: strerror(errno)))")
      }
      defer { umount(mountPoint.path) }
      let result = try runPTrain(tiny + ["--save", mountPoint.path + "/x.safetensors"])
      assertRefused(result, status: 64, "cannot create a file in \(mountPoint.path): \(reason)")
    }
  }

  /// Item 4: a relative `--data` is stored absolute, so the checkpoint evaluates and
  /// resumes from any directory.
  func testRelativeDataPathIsStoredAbsolute() throws {
    let directory = try makeTemporaryDirectory()
    let data = directory.appendingPathComponent("digits")
    try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
    for name in Dataset.fileNames {
      try Data(Dataset.bundledMNISTFile(name)!).write(to: data.appendingPathComponent(name + ".gz"))
    }
    let path = directory.appendingPathComponent("run.safetensors").path
    XCTAssertEqual(try runPTrain(tiny + ["--data", "digits", "--save", path], in: directory).status, 0)
    XCTAssertEqual(try Checkpoint(path: path).metadata["data_directory"], data.resolvingSymlinksInPath().path)
    let elsewhere = try makeTemporaryDirectory()
    let evaluation = try runPTrain(["evaluate", path, "--json"], in: elsewhere)
    XCTAssertEqual(evaluation.status, 0, evaluation.stderr)
    XCTAssertEqual(try evaluation.json()["dataset"] as? String, "digits")
  }

  /// Item 5: a crafted position or text field is refused with one line, never reaching a
  /// kernel. Item 13: a bad `frozen` names the file.
  func testCraftedCheckpointsAreRefused() throws {
    let directory = try makeTemporaryDirectory()
    let good = directory.appendingPathComponent("good.safetensors").path
    XCTAssertEqual(try runPTrain(tiny + ["--save", good, "--epochs", "2"]).status, 0)  // 10 steps an epoch
    let cases: [([String: String], String)] = [
      (
        ["steps_into_epoch": "11", "optimizer_step": "11", "epochs_completed": "0"],
        "steps_into_epoch 11 is past the 10 steps"
      ),
      (
        ["steps_into_epoch": "\(Int.max)", "optimizer_step": "\(Int.max)", "epochs_completed": "0"],
        "is past the 10 steps"
      ),
      (
        ["steps_into_epoch": "11", "optimizer_step": "5", "epochs_completed": "0"],
        "steps_into_epoch 11 is more than optimizer_step 5"
      ),
      (["optimizer_step": "7"], "optimizer_step 7 is not the 2 epoch(s) of 10 steps"),
      (["epochs_completed": "3"], "lies past the run's 2 epochs"),
      (["epoch_correct": "5"], "epoch_correct 5 is more than the 0 images"),
      (["epoch_loss_sum": "1.5"], "not zero at its first step"),
      (
        ["steps_into_epoch": "3", "optimizer_step": "13", "epochs_completed": "1", "epoch_correct": "97"],
        "epoch_correct 97"
      ),
      (["epoch_loss_sum": "inf"], "epoch_loss_sum is not a non-negative number"),
      (["shard_size": "1000000"], "the shard size must be from 1 to 65536"),
      (["batch_size": "0"], "batch_size is not an integer ≥ 1"),
      (["data_directory": "/x\nptrain: forged line"], "__metadata__.data_directory holds a control character"),
      (["dataset": "mnist\u{1B}[2J"], "__metadata__.dataset holds a control character"),
      (["frozen": "conv9"], "bad.safetensors: __metadata__.frozen: there is no layer with parameters called \"conv9\""),
      (
        ["history": #"[{"epoch":0,"trainLoss":1,"trainAccuracy":2,"imagesPerSecond":1}]"#],
        "bad.safetensors: __metadata__.history[0] holds a value out of range"
      ),
      (["history": "[1,2]"], "bad.safetensors: __metadata__.history is not a list of epochs"),
    ]
    let bad = directory.appendingPathComponent("bad.safetensors").path
    for (changes, fragment) in cases {
      try rewriteMetadata(good, to: bad, changes)
      let result = try runPTrain(["train", "--resume", bad, "--epochs", "3", "--quiet"])
      assertRefused(result, status: 1, fragment)
    }
  }

  /// Item 6: thread counts past the documented limit are usage errors in every subcommand.
  func testHugeThreadCountsAreUsageErrors() throws {
    let directory = try makeTemporaryDirectory()
    let good = directory.appendingPathComponent("good.safetensors").path
    XCTAssertEqual(try runPTrain(tiny + ["--save", good]).status, 0)
    for threads in ["1025", "99999", "99999999999", "\(Int.max)"] {
      for command in [
        ["train"], ["evaluate", good], ["finetune", "--from", good], ["topology"],
        ["train", "--resume", good, "--epochs", "2"],
      ] {
        let result = try runPTrain(command + ["--threads", threads], timeout: 30)
        assertRefused(result, status: 64, "--threads must be at most 1024, got \(threads)")
      }
      assertRefused(try runPTrain(["bench", "--threads", threads]), status: 64, "integers from 1 to 1024")
    }
  }

  /// Item 7: a FIFO where a file is read is refused at once, not waited on.
  func testFIFOsAreRefusedWithoutBlocking() throws {
    let directory = try makeTemporaryDirectory()
    let fifo = directory.appendingPathComponent("fifo").path
    XCTAssertEqual(mkfifo(fifo, 0o600), 0)
    let data = directory.appendingPathComponent("data")
    try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
    for name in Dataset.fileNames.dropLast() {
      try Data(Dataset.bundledMNISTFile(name)!).write(to: data.appendingPathComponent(name + ".gz"))
    }
    let fifoData = data.appendingPathComponent(Dataset.fileNames.last!).path
    XCTAssertEqual(mkfifo(fifoData, 0o600), 0)
    for arguments in [
      ["evaluate", fifo], ["train", "--resume", fifo], ["finetune", "--from", fifo],
      ["--data", data.path] + tiny,
    ] {
      let result = try runPTrain(arguments, timeout: 30)
      assertRefused(result, status: 1, "is a FIFO, not a regular file")
    }
  }

  /// Item 8: a seed of 2^63 or more saves and resumes.
  func testSeedsAboveInt64Resume() throws {
    let path = try makeTemporaryDirectory().appendingPathComponent("seed.safetensors").path
    let seed = "18446744073709551615"
    XCTAssertEqual(try runPTrain(tiny + ["--seed", seed, "--save", path]).status, 0)
    XCTAssertEqual(try Checkpoint(path: path).trainingState().options.seed, UInt64.max)
    let resumed = try runPTrain(["train", "--resume", path, "--epochs", "2", "--quiet", "--json"])
    XCTAssertEqual(resumed.status, 0, resumed.stderr)
    XCTAssertEqual(try resumed.json()["seed"] as? UInt64, UInt64.max)
  }

  /// Item 9: bad flag values exit 64 in every subcommand.
  func testBadFlagValuesExit64() throws {
    let directory = try makeTemporaryDirectory()
    let good = directory.appendingPathComponent("good.safetensors").path
    XCTAssertEqual(try runPTrain(tiny + ["--save", good]).status, 0)
    let cases: [([String], String)] = [
      (["evaluate", good, "--threads", "0"], "--threads must be at least 1, got 0"),
      (["topology", "--threads", "0"], "--threads must be at least 1, got 0"),
      (["train", "--resume", good, "--epochs", "2", "--threads", "0"], "--threads must be at least 1, got 0"),
      (["bench", "--threads", "0,1"], "got '0,1'"),
      (["bench", "--threads", "1,,2"], "got '1,,2'"),
      (["bench", "--threads", ",1"], "got ',1'"),
      (["bench", "--steps", "0"], "--steps must be at least 1, got 0"),
      (["bench", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
      (["--epochs", "1000001"], "--epochs must be at most 1000000"),
    ]
    for (arguments, fragment) in cases {
      assertRefused(try runPTrain(arguments), status: 64, fragment)
    }
  }

  /// Item 11: results that cannot be written are an error, not a silent exit 0.
  func testFailedWritesToStdoutAreErrors() throws {
    // ThreadSanitizer's runtime itself faults (SIGBUS, before ptrain's main) when it starts
    // with a closed stdout or a zero file-size limit; the plain and ASan runs cover this.
    if ProcessInfo.processInfo.environment["TSAN_OPTIONS"] != nil {
      throw XCTSkip("not under ThreadSanitizer, whose runtime cannot start with these limits")
    }
    let directory = try makeTemporaryDirectory()
    let closed = try runPTrainInShell("exec \"$PTRAIN\" --train-limit 320 --epochs 1 --quiet --json >&-")
    assertRefused(
      closed, status: 1, "cannot write the results to standard output: Bad file descriptor", beforeTraining: false)
    let full = try runPTrainInShell(
      "ulimit -f 0; trap '' XFSZ; exec \"$PTRAIN\" --train-limit 320 --epochs 1 --quiet --json > out.json",
      in: directory)
    assertRefused(full, status: 1, "cannot write the results to standard output: File too large", beforeTraining: false)
  }

  /// Item 12: `bench --svg` checks its path before benchmarking.
  func testBenchChecksTheChartPathFirst() throws {
    let directory = try makeTemporaryDirectory()
    let result = try runPTrain(["bench", "--threads", "1", "--steps", "2", "--svg", directory.path + "/no/chart.svg"])
    assertRefused(result, status: 64, "--svg \(directory.path)/no/chart.svg: cannot create a file")
    XCTAssertFalse(result.stderr.contains("bench: 1 thread"))
  }

  /// Item 13: broken symlinks under `--data` say what they are; resuming on smaller data
  /// says what the checkpoint was trained on, not a flag the user never gave.
  func testMessagesSayWhatIsWrong() throws {
    let directory = try makeTemporaryDirectory()
    for (name, destination, fragment) in [
      ("dangling", "nowhere.gz", "is a dangling symbolic link (to nowhere.gz, which does not exist)"),
      ("loop", Dataset.fileNames.last! + ".gz", "is a symbolic link loop"),
    ] {
      let data = directory.appendingPathComponent(name)
      try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
      for file in Dataset.fileNames.dropLast() {
        try Data(Dataset.bundledMNISTFile(file)!).write(to: data.appendingPathComponent(file + ".gz"))
      }
      try FileManager.default.createSymbolicLink(
        atPath: data.appendingPathComponent(Dataset.fileNames.last! + ".gz").path, withDestinationPath: destination)
      assertRefused(try runPTrain(tiny + ["--data", data.path]), status: 1, fragment)
    }
    let path = directory.appendingPathComponent("run.safetensors").path
    XCTAssertEqual(try runPTrain(["--train-limit", "640", "--epochs", "1", "--quiet", "--save", path]).status, 0)
    let small = directory.appendingPathComponent("small")
    try FileManager.default.createDirectory(at: small, withIntermediateDirectories: true)
    for name in Dataset.fileNames {
      let mnist = try IDXFile.decode(
        Dataset.bundledMNISTFile(name)!, name: name, dimensionCount: name.contains("images") ? 3 : 1)
      let count = 100
      let perItem = mnist.dimensions.dropFirst().reduce(1, *)
      var bytes: [UInt8] = [0, 0, 8, UInt8(mnist.dimensions.count)]
      for d in [count] + mnist.dimensions.dropFirst() { bytes += withUnsafeBytes(of: UInt32(d).bigEndian, Array.init) }
      bytes += mnist.bytes.prefix(count * perItem)
      try Data(bytes).write(to: small.appendingPathComponent(name))
    }
    let result = try runPTrain(["train", "--resume", path, "--epochs", "2", "--data", small.path])
    assertRefused(result, status: 1, "\(path) was trained on 640 images, but small has only 100 training images")
    XCTAssertFalse(result.stderr.contains("--train-limit"))
  }

  /// Item 14: saving over a checkpoint keeps its permission bits.
  func testSavingOverACheckpointKeepsItsMode() throws {
    let path = try makeTemporaryDirectory().appendingPathComponent("private.safetensors").path
    XCTAssertEqual(try runPTrain(tiny + ["--save", path]).status, 0)
    XCTAssertEqual(chmod(path, 0o600), 0)
    XCTAssertEqual(try runPTrain(["train", "--resume", path, "--epochs", "2", "--quiet", "--save", path]).status, 0)
    var info = stat()
    XCTAssertEqual(stat(path, &info), 0)
    XCTAssertEqual(info.st_mode & 0o777, 0o600)
    XCTAssertEqual(try Checkpoint(path: path).metadata["epochs_completed"], "2")
  }

  /// Item 15: a repeated key in a checkpoint's header is refused with its byte offset.
  func testDuplicateHeaderKeysAreRefused() throws {
    let directory = try makeTemporaryDirectory()
    let good = directory.appendingPathComponent("good.safetensors").path
    XCTAssertEqual(try runPTrain(tiny + ["--save", good]).status, 0)
    let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: good)))
    let length = bytes[0..<8].reversed().reduce(0) { $0 << 8 | Int($1) }
    let header = String(decoding: bytes[8..<(8 + length)], as: UTF8.self).replacingOccurrences(
      of: #""0.bias":{"dtype":"F32","#, with: #""0.bias":{"dtype":"F32","dtype":"F16","#)
    let newHeader = Array(header.utf8)
    XCTAssertGreaterThan(newHeader.count, length, "the header repeats a key now")
    let edited = directory.appendingPathComponent("dup.safetensors")
    let lengthBytes = (0..<8).map { UInt8(truncatingIfNeeded: newHeader.count >> (8 * $0)) }
    try Data(lengthBytes + newHeader + bytes[(8 + length)...]).write(to: edited)
    assertRefused(try runPTrain(["evaluate", edited.path]), status: 1, "duplicate key \"dtype\"")
  }

  /// Item 18: more threads than a batch has shards is warned about, with what to do, and
  /// bench's default thread list stops at the shard count.
  func testMoreThreadsThanShardsIsWarnedAbout() throws {
    let result = try runPTrain(["--train-limit", "320", "--epochs", "1", "--threads", "9", "--quiet"])
    XCTAssertEqual(result.status, 0, result.stderr)
    XCTAssertTrue(
      result.stderr.contains(
        "ptrain: warning: 9 threads, but a batch of 32 makes only 8 shard(s) of 4 images: 1 worker(s) will idle at every step; use --threads 8, or --batch-size 36 or larger"
      ), result.stderr)
    let bench = try runPTrain(["bench", "--batch-size", "4", "--steps", "2", "--json"])
    XCTAssertEqual(bench.status, 0, bench.stderr)
    let rows = try XCTUnwrap(try bench.json()["rows"] as? [[String: Any]])
    XCTAssertEqual(rows.map { $0["threads"] as? Int }, [1], "one shard of 4 images: one thread")
  }
}
