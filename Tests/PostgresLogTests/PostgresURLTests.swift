import Testing

@testable import PostgresLog

@Suite struct PostgresURLTests {
    @Test func aURLIsReadAsLibpqReadsIt() throws {
        let url = try PostgresURL("postgres://hub:s%40cret@db.example:6543/events?sslmode=require")
        #expect(url.endpoint == .tcp(host: "db.example", port: 6543))
        #expect(url.username == "hub")
        #expect(url.password == "s@cret")
        #expect(url.database == "events")
        #expect(url.tlsMode == .require)
        // The password never reaches a log line.
        #expect(url.description == "postgres://hub@db.example:6543/events?sslmode=require")
    }

    @Test func defaultsAreLibpqs() throws {
        let url = try PostgresURL("postgresql://localhost")
        #expect(url.endpoint == .tcp(host: "localhost", port: 5432))
        #expect(url.username == "postgres")
        #expect(url.password == nil && url.database == nil)
        #expect(url.tlsMode == .prefer)
    }

    @Test func aSocketDirectoryInTheQuerySelectsAUnixSocket() throws {
        let url = try PostgresURL("postgres://hub@/events?host=/run/postgresql")
        #expect(url.endpoint == .unixSocket(path: "/run/postgresql/.s.PGSQL.5432"))
    }

    @Test func whatIsNotAPostgresURLIsRefusedWithTheReason() {
        #expect(throws: PostgresURL.Invalid.self) { try PostgresURL("mysql://x/y") }
        #expect(throws: PostgresURL.Invalid.self) { try PostgresURL("postgres:///nohost") }
        #expect(throws: PostgresURL.Invalid.self) { try PostgresURL("postgres://h/db?sslmode=maybe") }
    }

    @Test func theHubsSessionsAskForDurableCommits() throws {
        let configuration = try PostgresURL("postgres://h/db?sslmode=disable").clientConfiguration()
        #expect(configuration.options.additionalStartupParameters.contains { $0 == ("synchronous_commit", "on") })
    }
}
