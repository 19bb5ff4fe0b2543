import FuzzChecks
import Foundation
import Testing

/// The committed corpora (Fuzz/Corpus/TARGET), replayed through the fuzz targets' checks without libFuzzer: a short
/// run of the same properties on every `swift test`.
@Suite("The fuzz corpora replay without a finding")
struct FuzzCorpusReplayTests {
    static let corpusRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz/Corpus").path

    @Test(arguments: FuzzTarget.allCases)
    func replays(_ target: FuzzTarget) throws {
        let directory = "\(Self.corpusRoot)/\(target.rawValue)"
        let inputs = try Replay.inputFiles([directory])
        #expect(inputs.count >= 5, "corpus \(directory)")
        let findings = try Replay.findings(target, paths: [directory])
        #expect(findings.isEmpty, "\(findings.map { "\($0.path): \($0.finding)" })")
    }

    /// Fuzz/Findings/token-claims: what the token-claims target found, `TokenVerifier.verify` trapping on an `exp`
    /// beyond Int64 (1e300, 2^63). Fixed on the branch that reworks HubClaims/TokenVerifier; enable this test, and
    /// move the inputs into Fuzz/Corpus/token-claims, once that is merged.
    @Test(.disabled("TokenVerifier traps on an exp beyond Int64: fixed on another branch"))
    func tokenClaimsFindingsNoLongerCrash() throws {
        let directory = "\(Self.corpusRoot)/../Findings/token-claims"
        #expect(try Replay.findings(.tokenClaims, paths: [directory]).isEmpty)
    }
}
