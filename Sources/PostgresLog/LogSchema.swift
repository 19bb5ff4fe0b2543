import Logging
import PostgresNIO

/// A database this release must not use (its schema is newer): refused at once, not retried.
public protocol LogSchemaRefused: Error, CustomStringConvertible {}

/// The hub's tables and functions in the `sse_hub` schema, created on first start and upgraded in place: each
/// release knows the migrations up to its `currentVersion` and applies the missing ones, in one transaction under
/// an advisory lock (hosts starting together take turns). A database whose schema is newer than this release
/// knows is refused before anything is touched: an older binary must not write to a log it does not understand.
enum LogSchema {
    /// The notification channel the publishing transactions ring on commit (one empty `NOTIFY` each: PostgreSQL
    /// folds identical notifications of one transaction into one). Only a doorbell: the rows are the log.
    static let doorbell = "sse_hub_events"
    /// `pg_advisory_xact_lock` keys: the schema's migration, and the retention sweep (one host at a time).
    static let migrationLock: Int64 = 0x5353_4548_5542_0001
    static let retentionLock: Int64 = 0x5353_4548_5542_0002

    /// Each migration's statements, in order; `migrations[n - 1]` takes the schema from version n - 1 to n.
    static let migrations: [[String]] = [version1, version2]
    static var currentVersion: Int { migrations.count }

    struct NewerSchema: LogSchemaRefused {
        var found: Int
        var known: Int
        var description: String {
            "the database holds sse-hub schema version \(found), newer than this release understands (\(known)): "
                + "run a release that knows it, or point --postgres-url at another database"
        }
    }

    /// Creates or upgrades the schema on `connection` (to `target`: the tests build an older release's database);
    /// returns the version it had before (0: none).
    @discardableResult
    static func prepare(on connection: PostgresConnection, logger: Logger, upTo target: Int = currentVersion) async throws -> Int {
        try await connection.query("BEGIN", logger: logger)
        do {
            try await connection.query("SELECT pg_advisory_xact_lock(\(migrationLock))", logger: logger)
            let found = try await installedVersion(on: connection, logger: logger)
            guard found <= currentVersion else { throw NewerSchema(found: found, known: currentVersion) }
            for version in (found + 1)..<(max(found, target) + 1) {
                for statement in migrations[version - 1] {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query("UPDATE sse_hub.meta SET schema_version = \(version)", logger: logger)
                logger.notice(
                    "event log schema upgraded", metadata: ["from": "\(version - 1)", "to": "\(version)", "event": "log-schema-upgraded"])
            }
            try await connection.query("COMMIT", logger: logger)
            return found
        } catch {
            _ = try? await connection.query("ROLLBACK", logger: logger)
            throw error
        }
    }

    private static func installedVersion(on connection: PostgresConnection, logger: Logger) async throws -> Int {
        let exists = try await connection.query("SELECT to_regclass('sse_hub.meta') IS NOT NULL", logger: logger)
        guard try await exists.single(Bool.self) == true else { return 0 }
        let rows = try await connection.query("SELECT schema_version FROM sse_hub.meta", logger: logger)
        return try await rows.single(Int32.self).map(Int.init) ?? 0
    }

    /// Version 1: the log, its head, the hosts, and the functions that publish.
    private static let version1 = [
        "CREATE SCHEMA IF NOT EXISTS sse_hub",
        // One row: the schema's version and the log's identity, the epoch of every event id (its creation time in
        // milliseconds, as a single host's epoch is its start time), so ids from another log are told apart.
        """
        CREATE TABLE sse_hub.meta (
            singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            schema_version integer NOT NULL,
            log_id bigint NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """,
        "INSERT INTO sse_hub.meta (schema_version, log_id) VALUES (0, (extract(epoch FROM clock_timestamp()) * 1000)::bigint)",
        // One row: the last id given. Publishing updates it, so publishing transactions hold its row lock until
        // they end and take ids one after another, in commit order: a reader that sees id N has seen every id
        // below it (no gap, nothing committed behind it), and a rollback gives its ids back.
        // `last_change` numbers the users' changes the same way, under the same lock, so that events and changes
        // have one order between them.
        """
        CREATE TABLE sse_hub.head (
            singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            last_id bigint NOT NULL,
            last_change bigint NOT NULL
        )
        """,
        "INSERT INTO sse_hub.head (last_id, last_change) VALUES (0, 0)",
        // The log. The checks are the publish API's: no row can carry a name that would break an SSE frame.
        """
        CREATE TABLE sse_hub.events (
            id bigint PRIMARY KEY,
            event text NOT NULL CHECK (event ~ '^[A-Za-z0-9_.:-]{1,64}$'),
            data text NOT NULL CHECK (octet_length(data) <= 1048576),
            topic text CHECK (topic ~ '^[A-Za-z0-9_.:-]{1,128}$'),
            user_id text CHECK (octet_length(user_id) BETWEEN 1 AND 1024),
            published_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            CHECK (topic IS NULL OR user_id IS NULL)
        )
        """,
        "CREATE INDEX events_published_at ON sse_hub.events (published_at)",
        // Each host's last heartbeat and counts: the hub's stats are their sums.
        """
        CREATE TABLE sse_hub.hosts (
            host_id text PRIMARY KEY,
            started_at timestamptz NOT NULL,
            heartbeat_at timestamptz NOT NULL,
            log_cursor bigint NOT NULL,
            clients integer NOT NULL,
            topics jsonb NOT NULL
        )
        """,
        // Users' changes, in order, each after the event `after_event`: every host applies them between the same
        // two events. One row per topic.
        """
        CREATE TABLE sse_hub.user_changes (
            seq bigint PRIMARY KEY,
            after_event bigint NOT NULL,
            user_id text NOT NULL CHECK (octet_length(user_id) BETWEEN 1 AND 1024),
            kind text NOT NULL CHECK (kind IN ('subscribed', 'unsubscribed', 'stream', 'forgotten')),
            topic text CHECK (topic ~ '^[A-Za-z0-9_.:-]{1,128}$'),
            host_id text NOT NULL,
            at timestamptz NOT NULL DEFAULT clock_timestamp()
        )
        """,
        // The users' state as the changes left it: what a host that joins starts from, and the grace's clock.
        """
        CREATE TABLE sse_hub.user_topics (
            user_id text NOT NULL,
            topic text NOT NULL,
            PRIMARY KEY (user_id, topic)
        )
        """,
        // Each user's newest stream: on which host, and since when it is closed (NULL: open). A user with topics
        // and no open stream for `--topic-grace` is forgotten by the sweep.
        """
        CREATE TABLE sse_hub.user_streams (
            user_id text PRIMARY KEY,
            host_id text NOT NULL,
            closed_at timestamptz
        )
        """,
        "CREATE INDEX user_streams_closed_at ON sse_hub.user_streams (closed_at) WHERE closed_at IS NOT NULL",
        // A batch of changes from one host, in order. 'closed' only updates the user's stream (hosts are not told).
        """
        CREATE FUNCTION sse_hub.append_user_changes(host text, kinds text[], users text[], topics text[])
        RETURNS void LANGUAGE plpgsql AS $$
        DECLARE
            after bigint;
            seq bigint;
            i integer;
        BEGIN
            SELECT last_id, last_change INTO after, seq FROM sse_hub.head FOR UPDATE;
            FOR i IN 1 .. coalesce(cardinality(kinds), 0) LOOP
                IF kinds[i] <> 'closed' THEN
                    seq := seq + 1;
                    INSERT INTO sse_hub.user_changes (seq, after_event, user_id, kind, topic, host_id)
                        VALUES (seq, after, users[i], kinds[i], nullif(topics[i], ''), host);
                END IF;
                CASE kinds[i]
                WHEN 'subscribed' THEN
                    INSERT INTO sse_hub.user_topics VALUES (users[i], topics[i]) ON CONFLICT DO NOTHING;
                    -- Topics taken with no stream anywhere start the grace now, as on one host.
                    INSERT INTO sse_hub.user_streams VALUES (users[i], host, clock_timestamp()) ON CONFLICT DO NOTHING;
                WHEN 'unsubscribed' THEN
                    DELETE FROM sse_hub.user_topics WHERE user_id = users[i] AND topic = topics[i];
                WHEN 'stream' THEN
                    INSERT INTO sse_hub.user_streams VALUES (users[i], host, NULL)
                        ON CONFLICT (user_id) DO UPDATE SET host_id = excluded.host_id, closed_at = NULL;
                WHEN 'closed' THEN
                    UPDATE sse_hub.user_streams SET closed_at = clock_timestamp()
                        WHERE user_id = users[i] AND host_id = host AND closed_at IS NULL;
                END CASE;
            END LOOP;
            UPDATE sse_hub.head SET last_change = seq;
            PERFORM pg_notify('\(doorbell)', '');
        END
        $$
        """,
        // The grace: users whose newest stream closed (or who took topics without one) more than `grace_seconds`
        // ago lose their topics, at most `most` at a time; every host hears `forgotten`. Under the head's lock, so
        // a stream opened meanwhile either came first (and the user is kept) or comes after.
        """
        CREATE FUNCTION sse_hub.forget_dark_users(grace_seconds double precision, most integer)
        RETURNS integer LANGUAGE plpgsql AS $$
        DECLARE
            after bigint;
            seq bigint;
            doomed text[];
            forgotten text[];
        BEGIN
            SELECT last_id, last_change INTO after, seq FROM sse_hub.head FOR UPDATE;
            SELECT array_agg(user_id) INTO doomed FROM (
                SELECT user_id FROM sse_hub.user_streams
                WHERE closed_at < clock_timestamp() - make_interval(secs => grace_seconds)
                ORDER BY closed_at LIMIT most) AS dark;
            IF doomed IS NULL THEN
                RETURN 0;
            END IF;
            -- Only users with topics have anything to forget: the others' rows just go.
            SELECT array_agg(DISTINCT user_id) INTO forgotten FROM sse_hub.user_topics WHERE user_id = ANY (doomed);
            IF forgotten IS NOT NULL THEN
                INSERT INTO sse_hub.user_changes (seq, after_event, user_id, kind, host_id)
                    SELECT seq + x.ord, after, x.user_id, 'forgotten', '' FROM unnest(forgotten) WITH ORDINALITY AS x(user_id, ord);
                UPDATE sse_hub.head SET last_change = seq + cardinality(forgotten);
                DELETE FROM sse_hub.user_topics WHERE user_id = ANY (forgotten);
                PERFORM pg_notify('\(doorbell)', '');
            END IF;
            DELETE FROM sse_hub.user_streams WHERE user_id = ANY (doomed);
            RETURN cardinality(doomed);
        END
        $$
        """,
        // What an app calls in its own transaction: on commit the event goes out, on rollback it never existed.
        """
        CREATE FUNCTION sse_hub.publish(event text, data jsonb, topic text DEFAULT NULL, user_id text DEFAULT NULL)
        RETURNS bigint LANGUAGE plpgsql AS $$
        DECLARE
            new_id bigint;
        BEGIN
            IF publish.topic IS NOT NULL AND publish.user_id IS NOT NULL THEN
                RAISE EXCEPTION 'sse_hub.publish: topic and user_id cannot be combined' USING ERRCODE = '22023';
            END IF;
            UPDATE sse_hub.head SET last_id = last_id + 1 RETURNING last_id INTO new_id;
            INSERT INTO sse_hub.events (id, event, data, topic, user_id)
                VALUES (new_id, publish.event, coalesce(publish.data::text, 'null'), publish.topic, publish.user_id);
            PERFORM pg_notify('\(doorbell)', '');
            RETURN new_id;
        END
        $$
        """,
        // The HTTP publishes of one group commit, in one statement: `data` is JSON the supervisor has already
        // validated and encoded compactly (as a single host sends it); an empty topic or user id means none.
        // Returns the first id; the others follow it in order.
        """
        CREATE FUNCTION sse_hub.append_batch(events text[], datas text[], topics text[], user_ids text[])
        RETURNS bigint LANGUAGE plpgsql AS $$
        DECLARE
            n integer := cardinality(events);
            last bigint;
        BEGIN
            UPDATE sse_hub.head SET last_id = last_id + n RETURNING last_id INTO last;
            INSERT INTO sse_hub.events (id, event, data, topic, user_id)
                SELECT last - n + x.ord, x.e, x.d, nullif(x.t, ''), nullif(x.u, '')
                FROM unnest(events, datas, topics, user_ids) WITH ORDINALITY AS x(e, d, t, u, ord);
            PERFORM pg_notify('\(doorbell)', '');
            RETURN last - n + 1;
        END
        $$
        """,
    ]
}
