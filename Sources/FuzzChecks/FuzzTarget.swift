/// The fuzz targets: each checks one input and says what went wrong, if anything. A crash inside a check is a
/// finding too (libFuzzer records the input).
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// The supervisor's head parser and routing decision against SwiftNIO's `HTTPRequestDecoder`.
    case requestHead = "request-head"
    /// `ControlFrame.decode`: a worker's (or supervisor's) frames, as a buggy or compromised peer might send them.
    case controlFrame = "control-frame"
    /// `Handoff(decoding:)`: what travels with a descriptor over the hand-off socket.
    case handoff
    /// `TokenVerifier.verify`, with claims signed by the secret so that decoding them is reached.
    case tokenClaims = "token-claims"
    /// `JSONWebKeySet(json:)` and the keys it yields: a JWKS document fetched from the network (`--jwks-url`).
    case jwks

    public func check(_ input: UnsafeRawBufferPointer) -> Finding? {
        switch self {
        case .requestHead: RequestHeadDifferential.check(input)
        case .controlFrame: ControlFrameCheck.check(input)
        case .handoff: HandoffCheck.check(input)
        case .tokenClaims: TokenClaimsCheck.check(input)
        case .jwks: JWKSCheck.check(input)
        }
    }
}

/// A property a fuzz target checks that did not hold.
public struct Finding: Error, CustomStringConvertible, Sendable {
    public let description: String

    init(_ description: String) { self.description = description }
}
