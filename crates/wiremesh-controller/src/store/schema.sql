-- The controller's store, schema version 1. Plain SQL that SQLite and PostgreSQL both run: explicit
-- column types, no AUTOINCREMENT, no STRICT, no SQLite-only types. Keys are standard base64 text,
-- addresses their usual text form, times Unix seconds, the netmap base64 of its wire bytes.

CREATE TABLE wiremesh_schema (
    version INTEGER NOT NULL
);

-- The last netmap issued: one row.
CREATE TABLE epoch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    epoch BIGINT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    netmap TEXT NOT NULL
);

-- Dynamic IPv4 leases; an address is leased to one member at most.
CREATE TABLE leases (
    member TEXT PRIMARY KEY,
    ipv4 TEXT NOT NULL UNIQUE
);

-- Members outside the inventory: agents that joined with a token and devices added by the admin.
CREATE TABLE nodes (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('agent', 'device')),
    node_public_key TEXT NOT NULL UNIQUE,
    wireguard_public_key TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

-- Join tokens, by the hex SHA-256 of the token; the token itself is never stored.
CREATE TABLE join_tokens (
    token_hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);

CREATE TABLE revocations (
    node_public_key TEXT PRIMARY KEY,
    wireguard_public_key TEXT NOT NULL,
    name TEXT NOT NULL,
    revoked_at BIGINT NOT NULL
);

INSERT INTO wiremesh_schema (version) VALUES (1);
