/// The height and width images are resized to (`--image-size HxW`).
public struct ImageSize: Sendable, Hashable, CustomStringConvertible {
  public let height: Int, width: Int

  /// The largest height or width accepted.
  public static let maximumSide = 4096

  public init(height: Int, width: Int) {
    self.height = height
    self.width = width
  }

  /// Reads `HxW`, such as `64x64`; each side from 1 to `maximumSide`.
  public init(parsing text: String) throws {
    let parts = text.lowercased().split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
    guard parts.count == 2, let height = parts[0], let width = parts[1],
      (1...Self.maximumSide).contains(height), (1...Self.maximumSide).contains(width)
    else {
      throw PTrainError(
        "image size \"\(text)\": expected HxW, such as 64x64, each side from 1 to \(Self.maximumSide)")
    }
    self.init(height: height, width: width)
  }

  /// `HxW`, the form `init(parsing:)` reads.
  public var description: String { "\(height)x\(width)" }
}
