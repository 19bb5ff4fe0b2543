import Foundation

/// Where the HS256 secret comes from, in order: `--jwt-secret-file`, `SSE_JWT_SECRET`, the systemd credential `jwt-secret`.
public enum JWTSecret {
    public struct Missing: Error, CustomStringConvertible {
        public let description: String
    }

    public static func load(file: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
        if let file {
            return try read(file)
        }
        if let secret = environment["SSE_JWT_SECRET"], !secret.isEmpty {
            return secret
        }
        if let directory = environment["CREDENTIALS_DIRECTORY"] {
            return try read(directory + "/jwt-secret")
        }
        throw Missing(
            description: "no JWT secret: pass --jwt-secret-file PATH, set SSE_JWT_SECRET, or provide the systemd credential jwt-secret"
        )
    }

    /// The file's contents without a trailing newline (what `echo secret > file` leaves).
    static func read(_ path: String) throws -> String {
        let contents: String
        do {
            contents = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw Missing(description: "cannot read the JWT secret from \(path): \(error.localizedDescription)")
        }
        let secret = contents.trimmingCharacters(in: .newlines)
        guard !secret.isEmpty else { throw Missing(description: "the JWT secret file \(path) is empty") }
        return secret
    }
}
