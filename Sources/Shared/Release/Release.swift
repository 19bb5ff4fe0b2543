import Foundation

/// This build's release, as `--version`, `ctl status` and the journal name it.
public enum Release {
    /// The release number, bumped with every release that ships.
    public static let number = "0.12.0"

    /// The release this binary reports: `number`, unless the tests' switch `SSE_HUB_TEST_RELEASE` names another
    /// (an in-place upgrade test re-executes into "another version" without building one).
    public static let version: String = ProcessInfo.processInfo.environment["SSE_HUB_TEST_RELEASE"] ?? number
}
