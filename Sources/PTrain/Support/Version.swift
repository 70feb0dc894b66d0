/// ptrain's version, which `ptrain --version` prints with the vector level it was built for.
public enum PTrainVersion {
  /// The release, as semantic versioning numbers it: the minor number grows with each
  /// change users can see, until the command line and the checkpoint format are frozen at 1.0.
  public static let release = "0.11.0"

  /// `0.11.0 (x86-64-v3 build)`: the release and the vector level of this build.
  public static var description: String { "\(release) (\(CPUSupport.level) build)" }
}
