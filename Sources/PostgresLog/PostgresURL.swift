import Foundation
import NIOSSL
import PostgresNIO

/// A libpq-style connection URL, `postgres://user:password@host:port/database?sslmode=...`, read into what
/// PostgresNIO's client takes. `sslmode` is libpq's: `disable`, `prefer` (the default: TLS when the server offers
/// it, unverified), `require` (TLS, unverified, as libpq does), `verify-ca` and `verify-full` (the system's trust
/// roots; `sslrootcert=PATH` adds a CA). `host=/run/postgresql` in the query selects a Unix socket directory.
public struct PostgresURL: Sendable, CustomStringConvertible {
    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    enum Endpoint: Sendable, Equatable {
        case tcp(host: String, port: Int)
        case unixSocket(path: String)
    }

    enum TLSMode: String, Sendable {
        case disable, prefer, require
        case verifyCA = "verify-ca"
        case verifyFull = "verify-full"
    }

    let endpoint: Endpoint
    let username: String
    let password: String?
    let database: String?
    let tlsMode: TLSMode
    let rootCertificatePath: String?

    public init(_ text: String) throws {
        guard let components = URLComponents(string: text), components.scheme == "postgres" || components.scheme == "postgresql"
        else { throw Invalid(description: "--postgres-url must look like postgres://user:password@host:5432/database") }
        var query: [String: String] = [:]
        for item in components.queryItems ?? [] { query[item.name] = item.value ?? "" }
        let port = components.port ?? 5432
        if let socketDirectory = query["host"], socketDirectory.hasPrefix("/") {
            endpoint = .unixSocket(path: "\(socketDirectory)/.s.PGSQL.\(port)")
        } else {
            guard let host = components.host, !host.isEmpty else { throw Invalid(description: "--postgres-url names no host") }
            endpoint = .tcp(host: host, port: port)
        }
        username = components.user ?? "postgres"
        password = components.password
        let path = components.path.drop { $0 == "/" }
        database = path.isEmpty ? nil : String(path)
        guard let mode = TLSMode(rawValue: query["sslmode"] ?? "prefer") else {
            throw Invalid(description: "--postgres-url: sslmode must be disable, prefer, require, verify-ca or verify-full")
        }
        tlsMode = mode
        rootCertificatePath = query["sslrootcert"]
    }

    /// The URL without its password, for logs.
    public var description: String {
        let place: String
        switch endpoint {
        case .tcp(let host, let port): place = "\(host):\(port)"
        case .unixSocket(let path): place = path
        }
        return "postgres://\(username)@\(place)/\(database ?? "")?sslmode=\(tlsMode.rawValue)"
    }

    private func tlsConfiguration() throws -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        switch tlsMode {
        case .disable, .prefer, .require: configuration.certificateVerification = .none
        case .verifyCA: configuration.certificateVerification = .noHostnameVerification
        case .verifyFull: configuration.certificateVerification = .fullVerification
        }
        if let rootCertificatePath { configuration.trustRoots = .file(rootCertificatePath) }
        return configuration
    }

    /// The pool's configuration.
    func clientConfiguration() throws -> PostgresClient.Configuration {
        var configuration: PostgresClient.Configuration
        switch endpoint {
        case .unixSocket(let path):
            configuration = .init(unixSocketPath: path, username: username, password: password, database: database)
        case .tcp(let host, let port):
            let tls: PostgresClient.Configuration.TLS
            switch tlsMode {
            case .disable: tls = .disable
            case .prefer: tls = .prefer(try tlsConfiguration())
            case .require, .verifyCA, .verifyFull: tls = .require(try tlsConfiguration())
            }
            configuration = .init(host: host, port: port, username: username, password: password, database: database, tls: tls)
        }
        configuration.options.connectTimeout = .seconds(5)
        configuration.options.additionalStartupParameters = Self.sessionSettings
        // The writers, the follower's reads and the heartbeat: a few at a time; a bound kind to the database.
        configuration.options.maximumConnections = 10
        return configuration
    }

    /// Whatever the database's defaults: a publish the hub confirms is on disk (an asynchronous commit could be
    /// lost in a crash of the server, and its position given again to another event), and the session is named.
    static let sessionSettings = [("synchronous_commit", "on"), ("application_name", "sse-hub")]

    /// One connection's configuration (the schema's preparation, and the follower's `LISTEN`).
    func connectionConfiguration() throws -> PostgresConnection.Configuration {
        var configuration: PostgresConnection.Configuration
        switch endpoint {
        case .unixSocket(let path):
            configuration = .init(unixSocketPath: path, username: username, password: password, database: database)
        case .tcp(let host, let port):
            let tls: PostgresConnection.Configuration.TLS
            switch tlsMode {
            case .disable: tls = .disable
            case .prefer: tls = .prefer(try NIOSSLContext(configuration: tlsConfiguration()))
            case .require, .verifyCA, .verifyFull: tls = .require(try NIOSSLContext(configuration: tlsConfiguration()))
            }
            configuration = .init(host: host, port: port, username: username, password: password, database: database, tls: tls)
        }
        configuration.options.connectTimeout = .seconds(5)
        configuration.options.additionalStartupParameters = Self.sessionSettings
        return configuration
    }
}
