import Foundation

/// Replays inputs (files, or every file in directories) through a target's check, without libFuzzer.
public enum Replay {
    /// Each input's path and what its check found.
    public static func findings(_ target: FuzzTarget, paths: [String]) throws -> [(path: String, finding: Finding)] {
        var findings: [(path: String, finding: Finding)] = []
        for path in try inputFiles(paths) {
            let input = try Data(contentsOf: URL(fileURLWithPath: path))
            if let finding = input.withUnsafeBytes({ target.check($0) }) { findings.append((path, finding)) }
        }
        return findings
    }

    /// The files named, and those in the directories named, in a stable order.
    public static func inputFiles(_ paths: [String]) throws -> [String] {
        var files: [String] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: path])
            }
            if isDirectory.boolValue {
                files += try FileManager.default.contentsOfDirectory(atPath: path).sorted().map { "\(path)/\($0)" }
            } else {
                files.append(path)
            }
        }
        return files
    }

    /// For `sse-fuzz` built without libFuzzer: prints each finding; 1 if there was any.
    public static func run(_ target: FuzzTarget, paths: [String]) -> Int32 {
        do {
            let found = try findings(target, paths: paths)
            for (path, finding) in found { print("\(path): \(finding)") }
            print("\(target.rawValue): \(try inputFiles(paths).count) inputs replayed, \(found.count) findings")
            return found.isEmpty ? 0 : 1
        } catch {
            print("\(target.rawValue): \(error)")
            return 2
        }
    }
}
