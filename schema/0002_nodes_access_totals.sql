-- Version 2: CDN nodes, access control and a time series of totals.

CREATE TABLE nodes (
    node_id     TEXT PRIMARY KEY,
    ip          TEXT,
    port        INTEGER,
    region      TEXT,
    first_seen  REAL NOT NULL,
    last_seen   REAL NOT NULL
);

-- Per-node secrets for the line protocol's HELLO token=...
CREATE TABLE node_tokens (
    node_id     TEXT PRIMARY KEY,
    token       TEXT NOT NULL,
    created_at  REAL NOT NULL
);

-- Info hashes allowed (allow-list mode) or refused (open mode).
CREATE TABLE access_list (
    list        TEXT NOT NULL CHECK (list IN ('allow', 'deny')),
    info_hash   BLOB NOT NULL,
    note        TEXT,
    added_at    REAL NOT NULL,
    PRIMARY KEY (list, info_hash)
) WITHOUT ROWID;

-- Tracker-wide settings changed at run time (for example access_mode = open|allow).
CREATE TABLE settings (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL
);

-- Banned client addresses, as CIDR blocks.
CREATE TABLE bans (
    cidr        TEXT PRIMARY KEY,
    note        TEXT,
    added_at    REAL NOT NULL
);

-- One row per minute, for the admin tool and the status page to plot.
CREATE TABLE totals (
    minute      INTEGER PRIMARY KEY,   -- Unix time // 60
    swarms      INTEGER NOT NULL,
    peers       INTEGER NOT NULL,
    seeders     INTEGER NOT NULL,
    leechers    INTEGER NOT NULL,
    announces   INTEGER NOT NULL       -- announces during that minute, all doors
);
