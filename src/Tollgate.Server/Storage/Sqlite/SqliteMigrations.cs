namespace Tollgate.Server.Storage.Sqlite;

/// <summary>
/// The schema, as an append-only list of migrations. A database records the version it is at
/// in <c>PRAGMA user_version</c>; opening it applies the missing steps in one transaction, so an
/// older file is upgraded in place and a crash mid-upgrade leaves it at the old version.
/// Never edit a released step: add a new one.
/// </summary>
internal static class SqliteMigrations
{
    public static readonly IReadOnlyList<string> Steps =
    [
        // v1: security profiles, users, codes, grants and refresh tokens.
        // Times are Unix milliseconds. Secrets, codes and refresh tokens appear only as SHA-256 hashes.
        """
        CREATE TABLE meta (
            key   TEXT PRIMARY KEY,
            value INTEGER NOT NULL
        ) WITHOUT ROWID;
        INSERT INTO meta (key, value) VALUES ('profile_generation', 0);

        CREATE TABLE access_token_keys (
            id         INTEGER PRIMARY KEY,
            material   BLOB NOT NULL,
            created_at INTEGER NOT NULL
        );

        CREATE TABLE profiles (
            id             INTEGER PRIMARY KEY,
            client_id      TEXT NOT NULL UNIQUE,
            app_id         TEXT NOT NULL UNIQUE,
            name           TEXT NOT NULL,
            is_public      INTEGER NOT NULL,
            refresh_policy TEXT NOT NULL CHECK (refresh_policy IN ('reuse', 'rotate')),
            created_at     INTEGER NOT NULL
        );

        CREATE TABLE profile_return_urls (
            profile_id INTEGER NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
            url        TEXT NOT NULL,
            PRIMARY KEY (profile_id, url)
        ) WITHOUT ROWID;

        CREATE TABLE profile_scopes (
            profile_id INTEGER NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
            scope      TEXT NOT NULL,
            PRIMARY KEY (profile_id, scope)
        ) WITHOUT ROWID;

        CREATE TABLE client_secrets (
            id          INTEGER PRIMARY KEY,
            profile_id  INTEGER NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
            secret_hash BLOB NOT NULL,
            created_at  INTEGER NOT NULL,
            expires_at  INTEGER
        );
        CREATE INDEX client_secrets_by_profile ON client_secrets (profile_id);

        CREATE TABLE users (
            id            INTEGER PRIMARY KEY,
            user_id       TEXT NOT NULL UNIQUE,
            email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
            name          TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            created_at    INTEGER NOT NULL
        );

        CREATE TABLE grants (
            id             INTEGER PRIMARY KEY,
            profile_id     INTEGER NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
            user_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            scope          TEXT NOT NULL,
            created_at     INTEGER NOT NULL,
            revoked_at     INTEGER,
            revoked_reason TEXT
        );
        CREATE INDEX grants_by_profile ON grants (profile_id);
        CREATE INDEX grants_by_user ON grants (user_id);

        CREATE TABLE authorization_codes (
            code_hash             BLOB PRIMARY KEY,
            profile_id            INTEGER NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
            user_id               INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            redirect_uri          TEXT NOT NULL,
            scope                 TEXT NOT NULL,
            code_challenge        TEXT,
            code_challenge_method TEXT,
            created_at            INTEGER NOT NULL,
            expires_at            INTEGER NOT NULL,
            redeemed_at           INTEGER,
            grant_id              INTEGER REFERENCES grants (id) ON DELETE CASCADE
        ) WITHOUT ROWID;

        CREATE TABLE refresh_tokens (
            token_hash  BLOB PRIMARY KEY,
            grant_id    INTEGER NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
            created_at  INTEGER NOT NULL,
            consumed_at INTEGER
        ) WITHOUT ROWID;
        CREATE INDEX refresh_tokens_by_grant ON refresh_tokens (grant_id);
        """,

        // v2: indexes for housekeeping, so that pruning expired codes, consumed refresh tokens and
        // revoked grants reads only what it deletes instead of scanning whole tables.
        """
        CREATE INDEX authorization_codes_by_expiry ON authorization_codes (expires_at);
        CREATE INDEX refresh_tokens_consumed ON refresh_tokens (consumed_at) WHERE consumed_at IS NOT NULL;
        CREATE INDEX grants_revoked ON grants (revoked_at) WHERE revoked_at IS NOT NULL;
        """,

        // v3: the web pages. Sessions, consents, device code pairs, the Data Protection key ring,
        // sign-in throttling and token activity. Ownership and the developer flag live in tables of
        // their own so that rows written by older code stay valid without a default to invent.
        """
        CREATE TABLE web_sessions (
            session_hash BLOB PRIMARY KEY,
            user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            created_at   INTEGER NOT NULL,
            expires_at   INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX web_sessions_by_expiry ON web_sessions (expires_at);

        CREATE TABLE developers (
            user_id INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE
        );

        CREATE TABLE profile_owners (
            profile_id INTEGER PRIMARY KEY REFERENCES profiles (id) ON DELETE CASCADE,
            user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE
        );
        CREATE INDEX profile_owners_by_user ON profile_owners (user_id);

        CREATE TABLE consents (
            user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            profile_id INTEGER NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
            scope      TEXT NOT NULL,
            granted_at INTEGER NOT NULL,
            PRIMARY KEY (user_id, profile_id)
        ) WITHOUT ROWID;

        CREATE TABLE device_codes (
            device_code_hash BLOB PRIMARY KEY,
            user_code        TEXT NOT NULL UNIQUE,
            profile_id       INTEGER NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
            scope            TEXT NOT NULL,
            interval_ms      INTEGER NOT NULL,
            created_at       INTEGER NOT NULL,
            expires_at       INTEGER NOT NULL,
            last_polled_at   INTEGER,
            user_id          INTEGER REFERENCES users (id) ON DELETE CASCADE,
            decided_at       INTEGER,
            approved         INTEGER,
            redeemed_at      INTEGER,
            grant_id         INTEGER REFERENCES grants (id) ON DELETE CASCADE
        ) WITHOUT ROWID;
        CREATE INDEX device_codes_by_expiry ON device_codes (expires_at);

        CREATE TABLE data_protection_keys (
            id         INTEGER PRIMARY KEY,
            name       TEXT NOT NULL,
            xml        TEXT NOT NULL,
            created_at INTEGER NOT NULL
        );

        CREATE TABLE sign_in_failures (
            throttle_key TEXT PRIMARY KEY,
            window_start INTEGER NOT NULL,
            failures     INTEGER NOT NULL
        ) WITHOUT ROWID;

        CREATE TABLE token_activity (
            profile_id INTEGER NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
            hour       INTEGER NOT NULL,
            issued     INTEGER NOT NULL,
            refused    INTEGER NOT NULL,
            PRIMARY KEY (profile_id, hour)
        ) WITHOUT ROWID;
        """,

        // v4: hardening and operations. Per-profile rate limits; access-token keys that are encrypted under a
        // master key (protection = its id; NULL: in the clear) and that seal tokens only from activates_at on
        // (NULL: from created_at), so a rotated key reaches every node before any node uses it; the audit trail.
        """
        ALTER TABLE profiles ADD COLUMN rate_limit_per_minute INTEGER;
        ALTER TABLE access_token_keys ADD COLUMN protection TEXT;
        ALTER TABLE access_token_keys ADD COLUMN activates_at INTEGER;

        CREATE TABLE audit_events (
            id         INTEGER PRIMARY KEY,
            at         INTEGER NOT NULL,
            event      TEXT NOT NULL,
            client_id  TEXT,
            user_id    TEXT,
            ip         TEXT,
            request_id TEXT,
            detail     TEXT
        );
        CREATE INDEX audit_events_by_time ON audit_events (at);
        CREATE INDEX audit_events_by_client ON audit_events (client_id, at);
        """,

        // v5: the codes' links to the grant they produced, indexed. Deleting a grant (pruning revokes them in batches)
        // makes SQLite's ON DELETE CASCADE look for the codes that point at it; without these it scanned both code
        // tables once per grant: 200 grants against 80,000 codes took 3.7 s on the single writer, 21 ms with them.
        // Partial (only redeemed codes have a grant), and a redemption appends at the end: its grant is the newest.
        """
        CREATE INDEX authorization_codes_by_grant ON authorization_codes (grant_id) WHERE grant_id IS NOT NULL;
        CREATE INDEX device_codes_by_grant ON device_codes (grant_id) WHERE grant_id IS NOT NULL;
        """,

        // v6: refresh tokens are found from their grant through chains instead of an index of every token. The index
        // by grant put each rotation's successor next to its grant's other tokens, a different page for every grant
        // in a commit: three quarters of the WAL a rotation load wrote. Now a consumed token records its successor
        // (a rotation rewrites that row anyway), and only a chain's first token is indexed by grant (is_root: a
        // grant's first token, a successor issued inside the grace window, and the successor of a pruned token).
        // The foreign key goes (SQLite can only drop one by rebuilding the table): its cascade needed the index,
        // so the store deletes a grant's tokens itself by walking its chains (SqliteTokenStore.DeleteTokensOfGrant).
        // Every existing token becomes a root, so every one is still found.
        """
        CREATE TABLE refresh_tokens_v6 (
            token_hash  BLOB PRIMARY KEY,
            grant_id    INTEGER NOT NULL,
            created_at  INTEGER NOT NULL,
            consumed_at INTEGER,
            successor   BLOB,
            is_root     INTEGER NOT NULL DEFAULT 1
        ) WITHOUT ROWID;
        INSERT INTO refresh_tokens_v6 (token_hash, grant_id, created_at, consumed_at)
            SELECT token_hash, grant_id, created_at, consumed_at FROM refresh_tokens;
        DROP TABLE refresh_tokens;
        ALTER TABLE refresh_tokens_v6 RENAME TO refresh_tokens;
        CREATE INDEX refresh_tokens_roots ON refresh_tokens (grant_id) WHERE is_root = 1;
        CREATE INDEX refresh_tokens_consumed ON refresh_tokens (consumed_at) WHERE consumed_at IS NOT NULL;
        """,

        // v7: a grant names the code it came from and its first refresh token. A code exchange appended to seven
        // B-trees; two of them were indexes that only ever led from the new grant back to those two rows
        // (authorization_codes_by_grant, for the cascade when a grant is deleted, and refresh_tokens_roots, for the
        // grant's first token), and with their internal pages they were a third of the WAL an exchange load wrote.
        // Now the grant's own row leads to both: its first token is stored as no root (is_root = 0), and the code's
        // link to its grant loses the foreign key (SQLite drops one only by rebuilding the table) and its index, so
        // the store deletes a grant's code itself (SqliteTokenStore.DeleteGrant). Existing links are copied into the
        // grants; existing tokens stay roots. Device codes keep theirs: that flow is not a hot path.
        """
        ALTER TABLE grants ADD COLUMN code_hash BLOB;
        ALTER TABLE grants ADD COLUMN first_token BLOB;

        CREATE TABLE authorization_codes_v7 (
            code_hash             BLOB PRIMARY KEY,
            profile_id            INTEGER NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
            user_id               INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            redirect_uri          TEXT NOT NULL,
            scope                 TEXT NOT NULL,
            code_challenge        TEXT,
            code_challenge_method TEXT,
            created_at            INTEGER NOT NULL,
            expires_at            INTEGER NOT NULL,
            redeemed_at           INTEGER,
            grant_id              INTEGER
        ) WITHOUT ROWID;
        INSERT INTO authorization_codes_v7
            SELECT code_hash, profile_id, user_id, redirect_uri, scope, code_challenge, code_challenge_method,
                   created_at, expires_at, redeemed_at, grant_id
            FROM authorization_codes;
        UPDATE grants SET code_hash = c.code_hash FROM authorization_codes_v7 c WHERE c.grant_id = grants.id;
        DROP TABLE authorization_codes;
        ALTER TABLE authorization_codes_v7 RENAME TO authorization_codes;
        CREATE INDEX authorization_codes_by_expiry ON authorization_codes (expires_at);
        """,
    ];

    public static int LatestVersion => Steps.Count;

    /// <summary>Applies the steps after the file's version up to <paramref name="target"/>; returns the version reached.</summary>
    public static int Apply(SqliteSession session, int target)
    {
        session.Execute("BEGIN IMMEDIATE");
        try
        {
            int current = ReadVersion(session);
            if (current > LatestVersion)
            {
                throw new StoreSchemaException(
                    $"the database is at schema version {current}, newer than this tollgate knows ({LatestVersion}); upgrade tollgate");
            }
            for (int version = current + 1; version <= target; version++)
            {
                session.Execute(Steps[version - 1]);
                session.Execute($"PRAGMA user_version = {version}");
            }
            session.Execute("COMMIT");
            return Math.Max(current, target);
        }
        catch
        {
            session.Execute("ROLLBACK");
            throw;
        }
    }

    public static int ReadVersion(SqliteSession session) =>
        Convert.ToInt32(session.Command("PRAGMA user_version").ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>The database cannot be used by this version of Tollgate (too new, or not a Tollgate database).</summary>
internal sealed class StoreSchemaException(string message) : Exception(message);
