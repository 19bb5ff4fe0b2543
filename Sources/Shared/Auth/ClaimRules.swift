import Foundation

/// What a token's claims must say besides its signature, from the supervisor's options: how late `exp` and how
/// early `nbf` may be (`--jwt-leeway`), the audiences and issuers accepted (`--jwt-audience`, `--jwt-issuer`; empty:
/// not checked) and the claim that makes a token a publisher's (`--publisher-claim`).
public struct ClaimRules: Sendable, Equatable {
    public var leewaySeconds: Int64
    public var audiences: [String]
    public var issuers: [String]
    public var publisherClaim: PublisherClaim

    public init(leewaySeconds: Int64 = 0, audiences: [String] = [], issuers: [String] = [], publisherClaim: PublisherClaim = .role) {
        self.leewaySeconds = leewaySeconds
        self.audiences = audiences
        self.issuers = issuers
        self.publisherClaim = publisherClaim
    }

    public static let seed = ClaimRules()
}

/// `CLAIM=VALUE`: a token is a publisher's when the claim at that dotted path (`role`, `realm_access.roles`) is the
/// string VALUE or an array holding it. Identity providers put roles in different places; the seed's is `role`.
public struct PublisherClaim: Sendable, Equatable, CustomStringConvertible {
    public let path: [String]
    public let value: String

    public static let role = PublisherClaim(path: ["role"], value: "publisher")

    init(path: [String], value: String) {
        self.path = path
        self.value = value
    }

    public init?(_ text: String) {
        guard let equals = text.firstIndex(of: "=") else { return nil }
        let path = text[..<equals].split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        let value = String(text[text.index(after: equals)...])
        guard !value.isEmpty, !path.contains(where: \.isEmpty) else { return nil }
        self.init(path: path, value: value)
    }

    public var description: String { path.joined(separator: ".") + "=" + value }

    static let userInfoKey = CodingUserInfoKey(rawValue: "sse-hub.publisher-claim")!

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// Whether the claims being decoded hold the claim; anything of another shape is simply not a match.
    func isHeld(by decoder: any Decoder) -> Bool {
        var container = try? decoder.container(keyedBy: Key.self)
        for component in path.dropLast() {
            container = try? container?.nestedContainer(keyedBy: Key.self, forKey: Key(stringValue: component))
        }
        let last = Key(stringValue: path[path.count - 1])
        if let string = try? container?.decode(String.self, forKey: last) { return string == value }
        if let array = try? container?.decode([JSONValue].self, forKey: last) { return array.contains(.string(value)) }
        return false
    }
}
