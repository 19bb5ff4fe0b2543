import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Shared
import Synchronization

/// `--jwks-url`: an identity provider's keys, fetched at start, every `refresh`, and soon after a token names a `kid`
/// no key has (a rotation the schedule has not seen yet), never twice within `minimum`. A failed fetch keeps the last
/// good keys and is retried after `minimum`, doubling up to `refresh`. The token that named the unknown `kid` is
/// refused (verification stays synchronous on the accept thread); its client's retry finds the new key.
public struct JWKSFetcher: Service {
    let url: String
    let ring: KeyRing
    let refresh: Duration
    let minimum: Duration
    let logger: Logger

    /// The longest a fetch may take, connection included.
    static let timeout: TimeAmount = .seconds(10)

    public init(url: String, ring: KeyRing, refresh: Duration, minimum: Duration, logger: Logger) {
        self.url = url
        self.ring = ring
        self.refresh = refresh
        self.minimum = minimum
        self.logger = logger
    }

    public func run() async throws {
        let unknownKeyID = Mutex(false)
        ring.onUnknownKeyID { _ in unknownKeyID.withLock { $0 = true } }
        let clock = ContinuousClock()
        var lastAttempt: ContinuousClock.Instant?
        var failures = 0
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            let now = clock.now
            let due: Bool
            if let lastAttempt {
                let wait = failures > 0 ? min(refresh, minimum * (1 << min(failures - 1, 16))) : refresh
                due = now >= lastAttempt + wait || (unknownKeyID.withLock { $0 } && now >= lastAttempt + minimum)
            } else {
                due = true
            }
            if due {
                unknownKeyID.withLock { $0 = false }
                lastAttempt = now
                do {
                    let set = try await fetch()
                    ring.replace(source: url, with: set.keys)
                    if failures > 0 { logger.notice("the JWKS URL answers again", metadata: ["event": "jwks-recovered", "source": "\(url)"]) }
                    failures = 0
                    logger.info("JWKS keys fetched", metadata: JWKSLog.metadata(event: "jwks-loaded", source: url, set: set))
                } catch {
                    failures += 1
                    logger.warning(
                        "cannot fetch the JWKS; the last good keys stay", metadata: ["event": "jwks-refused", "source": "\(url)", "error": "\(error)", "failures": "\(failures)"])
                }
            }
            // A second is fine enough for a schedule of minutes and a minimum of seconds, and costs nothing.
            try? await Task.sleep(for: .seconds(1))
        }
    }

    func fetch() async throws -> JSONWebKeySet {
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "Accept", value: "application/jwk-set+json, application/json")
        let response = try await HTTPClient.shared.execute(request, timeout: Self.timeout)
        guard response.status == .ok else {
            throw JSONWebKeySet.Invalid(description: "\(url) answered \(response.status.code) \(response.status.reasonPhrase)")
        }
        let body = try await response.body.collect(upTo: JSONWebKeySet.maximumBytes)
        let set = try JSONWebKeySet(json: body.readableBytesView, source: url)
        return set
    }
}
