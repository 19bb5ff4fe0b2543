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
}
