extension LogSchema {
    /// Version 2: the hub counts every user's streams across hosts, one row per live stream, so that a user may hold
    /// several (`--max-streams-per-user`, the oldest ended wherever it is) and presence is the hub's: who is online,
    /// and their coming online and going offline published to their topics from the same transactions.
    ///
    /// A stream's row is named by its host and `opened_at` (the host's name for it, kept across reloads) and aged by
    /// `opened_seq`, the log position of its opening: the one order every host agrees on, whatever their clocks.
    /// Every function that changes the rows holds `sse_hub.head`'s lock, so a stream opening on one host and the
    /// user's last closing on another are decided one after the other.
    static let version2 = [
        """
        ALTER TABLE sse_hub.user_changes
            DROP CONSTRAINT user_changes_kind_check,
            ADD CONSTRAINT user_changes_kind_check CHECK (kind IN ('subscribed', 'unsubscribed', 'stream', 'forgotten', 'replaced')),
            ADD COLUMN opened_at bigint
        """,
        """
        CREATE TABLE sse_hub.live_streams (
            opened_seq bigint PRIMARY KEY,
            user_id text NOT NULL,
            host_id text NOT NULL,
            shard integer NOT NULL,
            opened_at bigint NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT clock_timestamp()
        )
        """,
        "CREATE INDEX live_streams_user ON sse_hub.live_streams (user_id)",
        "CREATE INDEX live_streams_host ON sse_hub.live_streams (host_id, shard)",
        // Users whose last stream closed, in their presence grace: a stream opening within it cancels the offline.
        """
        CREATE TABLE sse_hub.going_offline (
            user_id text PRIMARY KEY,
            since timestamptz NOT NULL
        )
        """,
        "CREATE INDEX going_offline_since ON sse_hub.going_offline (since)",
        // A topic's users in byte order, for presence pages.
        #"CREATE INDEX user_topics_topic ON sse_hub.user_topics (topic, user_id COLLATE "C")"#,
        // `presence` to each of the user's topics, as one host publishes it (same data, byte for byte). The caller holds
        // the head's lock and rings the doorbell.
        """
        CREATE FUNCTION sse_hub.announce_presence(who text, online boolean)
        RETURNS void LANGUAGE plpgsql AS $$
        DECLARE
            topic_name text;
            new_id bigint;
        BEGIN
            FOR topic_name IN SELECT topic FROM sse_hub.user_topics WHERE user_id = who ORDER BY topic COLLATE "C" LOOP
                UPDATE sse_hub.head SET last_id = last_id + 1 RETURNING last_id INTO new_id;
                INSERT INTO sse_hub.events (id, event, data, topic)
                    VALUES (new_id, 'presence',
                            '{"online":' || CASE WHEN online THEN 'true' ELSE 'false' END || ',"userId":' || to_json(who)::text || '}',
                            topic_name);
            END LOOP;
        END
        $$
        """,
        // Users who may have lost their last stream: those left with none start their topics' grace and, with
        // presence, their going offline.
        """
        CREATE FUNCTION sse_hub.streams_gone(gone text[], presence boolean)
        RETURNS void LANGUAGE plpgsql AS $$
        BEGIN
            WITH dark AS (
                SELECT DISTINCT u AS user_id FROM unnest(gone) AS u
                WHERE NOT EXISTS (SELECT 1 FROM sse_hub.live_streams s WHERE s.user_id = u)
            ), grace AS (
                UPDATE sse_hub.user_streams SET closed_at = clock_timestamp()
                WHERE user_id IN (SELECT user_id FROM dark) AND closed_at IS NULL
            )
            INSERT INTO sse_hub.going_offline (user_id, since)
                SELECT user_id, clock_timestamp() FROM dark WHERE presence
                ON CONFLICT (user_id) DO NOTHING;
        END
        $$
        """,
        // Every stream of a host (`lost_shard` NULL: it starts afresh or leaves the hub) or of one of its workers (it
        // died) is gone. Returns how many users lost streams.
        """
        CREATE FUNCTION sse_hub.streams_lost(host text, lost_shard integer, presence boolean)
        RETURNS integer LANGUAGE plpgsql AS $$
        DECLARE
            gone text[];
        BEGIN
            PERFORM 1 FROM sse_hub.head FOR UPDATE;
            WITH deleted AS (
                DELETE FROM sse_hub.live_streams WHERE host_id = host AND (lost_shard IS NULL OR shard = lost_shard) RETURNING user_id
            )
            SELECT array_agg(DISTINCT user_id) INTO gone FROM deleted;
            IF gone IS NULL THEN
                RETURN 0;
            END IF;
            PERFORM sse_hub.streams_gone(gone, presence);
            RETURN cardinality(gone);
        END
        $$
        """,
        // A batch of changes from one host, in order; `stamps` name streams (0: every stream of the user on the host,
        // from a host of an older release), `shards` say whose worker holds one. 'closed' and 'lost' only change the
        // rows: hosts hear the consequences ('replaced', presence events), not the closes.
        """
        CREATE FUNCTION sse_hub.append_user_changes(
            host text, kinds text[], users text[], topics text[], stamps bigint[], shards integer[], max_streams integer, presence boolean)
        RETURNS void LANGUAGE plpgsql AS $$
        DECLARE
            after bigint;
            seq bigint;
            i integer;
            stamp bigint;
            old record;
        BEGIN
            SELECT last_id, last_change INTO after, seq FROM sse_hub.head FOR UPDATE;
            FOR i IN 1 .. coalesce(cardinality(kinds), 0) LOOP
                stamp := nullif(stamps[i], 0);
                IF kinds[i] IN ('subscribed', 'unsubscribed', 'stream') THEN
                    seq := seq + 1;
                    INSERT INTO sse_hub.user_changes (seq, after_event, user_id, kind, topic, host_id, opened_at)
                        VALUES (seq, after, users[i], kinds[i], nullif(topics[i], ''), host, stamp);
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
                    INSERT INTO sse_hub.live_streams (opened_seq, user_id, host_id, shard, opened_at)
                        VALUES (seq, users[i], host, coalesce(nullif(shards[i], -1), 0),
                                coalesce(stamp, (extract(epoch FROM clock_timestamp()) * 1000)::bigint));
                    IF presence THEN
                        -- Online only when this is the user's only stream, and they were not just away within the grace.
                        DELETE FROM sse_hub.going_offline WHERE user_id = users[i];
                        IF NOT FOUND AND (SELECT count(*) FROM sse_hub.live_streams WHERE user_id = users[i]) = 1 THEN
                            PERFORM sse_hub.announce_presence(users[i], true);
                            SELECT last_id INTO after FROM sse_hub.head;
                        END IF;
                    END IF;
                    -- Past the limit, the oldest streams end wherever they are: their hosts hear 'replaced'.
                    FOR old IN
                        SELECT s.opened_seq, s.host_id, s.opened_at FROM sse_hub.live_streams s
                        WHERE s.user_id = users[i] ORDER BY s.opened_seq DESC OFFSET greatest(max_streams, 1)
                    LOOP
                        DELETE FROM sse_hub.live_streams WHERE opened_seq = old.opened_seq;
                        seq := seq + 1;
                        INSERT INTO sse_hub.user_changes (seq, after_event, user_id, kind, topic, host_id, opened_at)
                            VALUES (seq, after, users[i], 'replaced', NULL, old.host_id, old.opened_at);
                    END LOOP;
                WHEN 'closed' THEN
                    DELETE FROM sse_hub.live_streams WHERE opened_seq IN (
                        SELECT s.opened_seq FROM sse_hub.live_streams s
                        WHERE s.user_id = users[i] AND s.host_id = host AND (stamp IS NULL OR s.opened_at = stamp)
                        ORDER BY s.opened_seq LIMIT CASE WHEN stamp IS NULL THEN NULL ELSE 1 END);
                    PERFORM sse_hub.streams_gone(ARRAY[users[i]], presence);
                WHEN 'lost' THEN
                    PERFORM sse_hub.streams_lost(host, nullif(shards[i], -1), presence);
                END CASE;
            END LOOP;
            UPDATE sse_hub.head SET last_change = seq;
            PERFORM pg_notify('\(doorbell)', '');
        END
        $$
        """,
        // A host of the previous release (one stream per user, no presence) keeps writing through the old signature.
        "DROP FUNCTION sse_hub.append_user_changes(text, text[], text[], text[])",
        """
        CREATE FUNCTION sse_hub.append_user_changes(host text, kinds text[], users text[], topics text[])
        RETURNS void LANGUAGE sql AS $$
            SELECT sse_hub.append_user_changes(host, kinds, users, topics, NULL, NULL, 1, false)
        $$
        """,
        // Users whose grace ran out with no stream anywhere go offline, at most `most` at a time. Cheap when nobody is
        // due (no lock taken), since every host with presence events calls it on each heartbeat.
        """
        CREATE FUNCTION sse_hub.announce_offline(grace_seconds double precision, most integer)
        RETURNS integer LANGUAGE plpgsql AS $$
        DECLARE
            who text;
            announced integer := 0;
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM sse_hub.going_offline WHERE since < clock_timestamp() - make_interval(secs => grace_seconds)) THEN
                RETURN 0;
            END IF;
            PERFORM 1 FROM sse_hub.head FOR UPDATE;
            FOR who IN
                DELETE FROM sse_hub.going_offline WHERE user_id IN (
                    SELECT g.user_id FROM sse_hub.going_offline g
                    WHERE g.since < clock_timestamp() - make_interval(secs => grace_seconds) ORDER BY g.since LIMIT most)
                RETURNING user_id
            LOOP
                IF NOT EXISTS (SELECT 1 FROM sse_hub.live_streams WHERE user_id = who) THEN
                    PERFORM sse_hub.announce_presence(who, false);
                    announced := announced + 1;
                END IF;
            END LOOP;
            IF announced > 0 THEN
                PERFORM pg_notify('\(doorbell)', '');
            END IF;
            RETURN announced;
        END
        $$
        """,
    ]
}
