-- Version 1: content, live peers and completions.
-- Hashes and peer ids are raw 20-byte BLOBs; times are Unix seconds (REAL).

CREATE TABLE content (
    info_hash   BLOB PRIMARY KEY,      -- 20 bytes
    first_seen  REAL NOT NULL,
    completed   INTEGER NOT NULL DEFAULT 0,
    name        TEXT,                  -- given by line-protocol nodes (HAVE name=...)
    size        INTEGER                -- bytes, likewise
);

-- Every live peer: enough to rebuild each swarm at start-up.
CREATE TABLE peers (
    info_hash   BLOB NOT NULL,
    peer_id     BLOB NOT NULL,
    ip          TEXT NOT NULL,
    port        INTEGER NOT NULL,
    left_bytes  INTEGER NOT NULL,
    uploaded    INTEGER NOT NULL,
    downloaded  INTEGER NOT NULL,
    last_seen   REAL NOT NULL,
    door        TEXT NOT NULL,         -- http, udp or line
    PRIMARY KEY (info_hash, peer_id)
) WITHOUT ROWID;

-- Who completed what, so a completion counts once per peer and content.
CREATE TABLE completions (
    info_hash     BLOB NOT NULL,
    peer_id       BLOB NOT NULL,
    completed_at  REAL NOT NULL,
    PRIMARY KEY (info_hash, peer_id)
) WITHOUT ROWID;

CREATE INDEX completions_at ON completions (completed_at);
