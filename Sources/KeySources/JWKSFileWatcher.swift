import Foundation
import Logging
import ServiceLifecycle
import Shared

/// `--jwks-file`: the keys of a JWKS document on disk, re-read within a second of a change (polled: an editor's or a
/// config manager's atomic rename replaces the inode, which a stat sees and a watch on the old inode would not). A
/// document that cannot be read or holds no usable key is logged and the last good keys stay.
public struct JWKSFileWatcher: Service {
    let path: String
    let ring: KeyRing
    let logger: Logger

    public init(path: String, ring: KeyRing, logger: Logger) {
        self.path = path
        self.ring = ring
        self.logger = logger
    }

    /// What a change looks like from outside: inode, size and modification time.
    struct Stamp: Equatable {
        var inode: UInt64
        var size: Int64
        var modified: Double

        init?(path: String) {
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else { return nil }
            inode = (attributes[.systemFileNumber] as? NSNumber)?.uint64Value ?? 0
            size = (attributes[.size] as? NSNumber)?.int64Value ?? 0
            modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        }
    }

    /// Reads the document and installs its keys; at start a failure is the operator's to fix before serving.
    public func load() throws {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw JSONWebKeySet.Invalid(description: "cannot read the JWKS file \(path): \(error.localizedDescription)")
        }
        let set = try JSONWebKeySet(json: data, source: path)
        ring.replace(source: path, with: set.keys)
        logger.info(
            "JWKS keys loaded", metadata: JWKSLog.metadata(event: "jwks-loaded", source: path, set: set))
    }

    public func run() async throws {
        var last = Stamp(path: path)
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: .seconds(1))
            let stamp = Stamp(path: path)
            guard stamp != last else { continue }
            last = stamp
            do {
                try load()
            } catch {
                logger.warning(
                    "the JWKS file changed but cannot be used; the last good keys stay",
                    metadata: ["event": "jwks-refused", "source": "\(path)", "error": "\(error)"])
            }
        }
    }
}

/// The metadata of a line that says which keys a JWKS source now has.
enum JWKSLog {
    static func metadata(event: String, source: String, set: JSONWebKeySet) -> Logger.Metadata {
        var metadata: Logger.Metadata = [
            "event": "\(event)", "source": "\(source)", "keys": "\(set.keys.count)",
            "kids": "\(set.keys.map { ($0.keyID ?? "-") + ":" + $0.algorithm.rawValue }.joined(separator: ","))",
        ]
        if !set.skipped.isEmpty { metadata["skipped"] = "\(set.skipped.joined(separator: "; "))" }
        return metadata
    }
}
