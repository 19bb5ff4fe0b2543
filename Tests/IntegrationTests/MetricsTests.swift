import Foundation
import Shared
import Testing

/// `--metrics-listen`: what a real Prometheus server (Debian's `prometheus`, started by the test with a scrape every
/// second) reads from the hub matches what the test did: streams open, events delivered, publishes, refusals.
@Suite(.serialized) struct MetricsTests {
    /// A private Prometheus server scraping `target` every second.
    final class PrometheusServer: Sendable {
        let port: Int
        let directory: URL
        let process: LineProcess

        init(scraping target: String) throws {
            port = try HubProcess.freePort()
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("sse-prometheus-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let config = directory.appendingPathComponent("prometheus.yml")
            try """
                global:
                  scrape_interval: 1s
                  evaluation_interval: 1s
                scrape_configs:
                  - job_name: sse-hub
                    static_configs:
                      - targets: ['\(target)']
                """.write(to: config, atomically: true, encoding: .utf8)
            process = try LineProcess([
                "prometheus", "--config.file=\(config.path)", "--storage.tsdb.path=\(directory.appendingPathComponent("data").path)",
                "--web.listen-address=127.0.0.1:\(port)", "--log.level=warn",
            ])
        }

        /// The value of an instant query's first sample, if it has one.
        func value(_ query: String) async throws -> Double? {
            let encoded = query.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? query
            let response = try await TestHTTP.request(port: port, "GET", "/api/v1/query?query=\(encoded)")
            guard response.status == 200 else { return nil }
            struct Answer: Decodable {
                struct Data: Decodable {
                    struct Sample: Decodable { var value: [JSONValue] }
                    var result: [Sample]
                }
                var data: Data
            }
            let answer = try JSONDecoder().decode(Answer.self, from: Foundation.Data(response.body))
            guard case .string(let text)? = answer.data.result.first?.value.last else { return nil }
            return Double(text)
        }

        func waitFor(_ query: String, toBe expected: Double, timeout: Duration = .seconds(30)) async throws {
            var last: Double?
            do {
                try await waitUntil("Prometheus to read \(query) = \(expected)", timeout: timeout, poll: .milliseconds(250)) {
                    last = try? await value(query)
                    return last == expected
                }
            } catch {
                throw TimedOut(description: "\(error); last value \(last.map { "\($0)" } ?? "none"); prometheus: \(process.errorText.suffix(2000))")
            }
        }

        func stop() async {
            try? await process.stop()
            try? FileManager.default.removeItem(at: directory)
        }
    }

    @Test func prometheusReadsTheStreamsAndEventsThatHappened() async throws {
        let metricsPort = try HubProcess.freePort()
        let hub = try await HubProcess.start(workers: 2, arguments: ["--metrics-listen", "127.0.0.1:\(metricsPort)"])
        let prometheus = try PrometheusServer(scraping: "127.0.0.1:\(metricsPort)")
        // Stopped whatever happens: a Prometheus left behind would scrape (and load) the tests after this one.
        do {
            try await measure(hub, metricsPort: metricsPort, prometheus)
        } catch {
            await prometheus.stop()
            _ = try? await hub.stop()
            throw error
        }
        await prometheus.stop()
        _ = try await hub.stop()
    }

    private func measure(_ hub: HubProcess, metricsPort: Int, _ prometheus: PrometheusServer) async throws {
        try await prometheus.waitFor("up{job=\"sse-hub\"}", toBe: 1)
        try await prometheus.waitFor("sse_hub_workers_up", toBe: 2)

        var streams: [SSETestStream] = []
        for user in ["ann", "ben", "cat"] { streams.append(try await hub.openStream(user)) }
        #expect(try await hub.subscribe("ann", ["news"]).status == 200)
        for n in 1...4 { #expect(try await hub.publish(#"{"event":"tick","data":\#(n)}"#).status == 200) }
        #expect(try await hub.publish(#"{"topic":"news","event":"headline","data":1}"#).status == 200)
        #expect(try await hub.publish(#"{"event":"bad name","data":1}"#).status == 400)
        for stream in streams { try await stream.waitForEvent("tick", count: 4) }
        try await streams[0].waitForEvent("headline")
        let refused = try await TestHTTP.request(port: hub.port, "GET", "/api/sse/stream?token=not-a-token")
        #expect(refused.status == 401)

        try await prometheus.waitFor("sse_hub_streams_open", toBe: 3)
        try await prometheus.waitFor("sum(sse_hub_worker_streams_open)", toBe: 3)
        // 4 broadcasts to 3 streams and a topic event to one: 13 event frames.
        try await prometheus.waitFor("sse_hub_events_delivered_total", toBe: 13)
        try await prometheus.waitFor("sse_hub_publishes_total{kind=\"broadcast\",result=\"accepted\"}", toBe: 4)
        try await prometheus.waitFor("sse_hub_publishes_total{kind=\"topic\",result=\"accepted\"}", toBe: 1)
        try await prometheus.waitFor("sum(sse_hub_publishes_total{result=\"refused\"})", toBe: 1)
        try await prometheus.waitFor("sse_hub_connections_refused_total{reason=\"bad_token\"}", toBe: 1)
        // Every connection a worker serves was handed off: three streams and the subscribe.
        try await prometheus.waitFor("sse_hub_handoff_duration_seconds_count", toBe: 4)
        #expect(try await prometheus.value("sse_hub_bytes_written_total").map { $0 > 0 } == true)
        #expect(try await prometheus.value("min(sse_hub_worker_resident_bytes)").map { $0 > 1_000_000 } == true)

        // A client that resumes from its last id is a resume; one closing brings the count down.
        let lastID = try #require(streams[1].events(named: "tick").last?.id)
        await streams[1].close()
        let resumed = try await SSETestStream.open(
            port: hub.port, target: "/api/sse/stream?token=\(try await hub.token("ben"))", headers: ["Last-Event-ID": lastID])
        try await resumed.waitForEvent("connected")
        try await prometheus.waitFor("sse_hub_resumes_total", toBe: 1)
        await streams[2].close()
        try await prometheus.waitFor("sse_hub_streams_open", toBe: 2)

        // Every name follows Prometheus' conventions, as its own linter reads them (only the help texts, which
        // swift-metrics has no way to give, are missing).
        let exposition = try await TestHTTP.request(port: metricsPort, "GET", "/metrics").text
        let lintInput = FileManager.default.temporaryDirectory.appendingPathComponent("sse-metrics-\(UUID().uuidString).txt")
        try exposition.write(to: lintInput, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: lintInput) }
        let lint = try await ChildProcess.run(URL(fileURLWithPath: "/bin/sh"), ["-c", "promtool check metrics < '\(lintInput.path)'"])
        let problems = (lint.output + lint.errors).split(separator: "\n").filter { !$0.contains("no help text") }
        #expect(problems.isEmpty, "\(problems)")

        await resumed.close()
        await streams[0].close()
    }

    /// The status page, in a real headless Chromium: it loads from the binary, goes live on the hub's own event stream,
    /// and its numbers follow streams opening and events published. Its screenshot is kept as a test artifact
    /// (`.build/test-artifacts/status-page.png`).
    @Test func theStatusPageFollowsTheHostLiveInChromium() async throws {
        let metricsPort = try HubProcess.freePort()
        let hub = try await HubProcess.start(workers: 2, arguments: ["--metrics-listen", "127.0.0.1:\(metricsPort)"])
        let first = try await hub.openStream("viewer-0")
        let artifacts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/test-artifacts")
        try FileManager.default.createDirectory(at: artifacts, withIntermediateDirectories: true)
        let screenshot = artifacts.appendingPathComponent("status-page.png")
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Clients/status_page_check.py")
        let browser = try LineProcess(
            ["python3", script.path, "--url", "http://127.0.0.1:\(metricsPort)/status", "--screenshot", screenshot.path, "--timeout", "60"],
            takesInput: true)
        do {
            try await follow(hub, first, browser, screenshot: screenshot)
        } catch {
            try? await browser.stop()
            _ = try? await hub.stop()
            throw error
        }
        try await browser.stop()
        _ = try await hub.stop()
    }

    private func follow(_ hub: HubProcess, _ first: SSETestStream, _ browser: LineProcess, screenshot: URL) async throws {

        /// Loads the page until it shows what `expected` wants (each load is a fresh browser that stays a few seconds).
        func pageShows(_ what: String, _ expected: @escaping ([String: JSONValue]) -> Bool) async throws -> [String: JSONValue] {
            var last: [String: JSONValue] = [:]
            try await waitUntil(what, timeout: .seconds(90), poll: .milliseconds(100)) {
                let before = browser.output.count
                try browser.send("dom")
                try await waitUntil("the page's DOM", timeout: .seconds(75)) { browser.output.count > before || !browser.process.isRunning }
                guard let line = browser.output.dropFirst(before).first,
                    let dom = try? JSONDecoder().decode([String: JSONValue].self, from: Data(line.utf8)), dom["step"] == "dom"
                else { throw TimedOut(description: "the harness said \(browser.output.suffix(3)) \(browser.errorText.suffix(2000))") }
                last = dom
                return expected(dom)
            }
            return last
        }

        let live = try await pageShows("the page live with one stream and two workers") {
            $0["state"] == .string("live") && $0["streams"] == .integer(1) && $0["workers"] == .integer(2)
        }
        guard case .integer(let snapshots)? = live["snapshots"] else { throw TimedOut(description: "no snapshot count: \(live)") }
        #expect(snapshots >= 2, "the page kept receiving snapshots while it stayed open: \(live)")

        let others = [try await hub.openStream("viewer-1"), try await hub.openStream("viewer-2")]
        for n in 1...3 { #expect(try await hub.publish(#"{"event":"tick","data":\#(n)}"#).status == 200) }
        for stream in [first] + others { try await stream.waitForEvent("tick", count: 3) }
        _ = try await pageShows("the page showing three streams and nine events delivered") {
            $0["streams"] == .integer(3) && $0["eventsDelivered"] == .integer(9)
        }

        try browser.send("shot")
        let shot = try await browser.waitForJSON("the screenshot", timeout: .seconds(75)) { $0["step"] == "shot" || $0["step"] == "error" }
        guard case .integer(let bytes)? = shot["bytes"] else { throw TimedOut(description: "no screenshot: \(shot)") }
        #expect(bytes > 10_000 && FileManager.default.fileExists(atPath: screenshot.path))
        try browser.send("quit")
        for stream in [first] + others { await stream.close() }
    }
}
