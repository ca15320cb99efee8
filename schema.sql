-- devicegate's whole schema, embedded in the binary and applied at start
-- (store::open records it in PRAGMA user_version).
-- Portable on purpose: integer Unix seconds, TEXT and INTEGER only, so the store
-- boundary can move to a server database later. Secrets (device codes, access and
-- refresh tokens, client secrets) are stored only as SHA-256 hex; passwords as argon2 PHC.

CREATE TABLE IF NOT EXISTS clients (
    client_id       TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    secret_hash     TEXT,              -- NULL: a public client (sends client_id only)
    scopes          TEXT NOT NULL,     -- space-separated scopes the client may ask for
    grant_types     TEXT NOT NULL,     -- space-separated grant types the client may use
    device_code_ttl INTEGER,           -- NULL: the server's default
    poll_interval   INTEGER,           -- NULL: the server's default
    created_at      INTEGER NOT NULL,
    -- OpenID Connect and RFC 9068 (schema version 3):
    access_token_format  TEXT NOT NULL DEFAULT 'opaque',  -- 'opaque' or 'jwt' (RFC 9068)
    access_token_audience TEXT,        -- a JWT access token's `aud`; NULL: the client_id
    id_token_signed_response_alg TEXT NOT NULL DEFAULT 'RS256',  -- 'RS256' or 'EdDSA'
    refresh_requires_offline_access INTEGER NOT NULL DEFAULT 0  -- 1: a refresh token only
                                       -- when the grant's scope has `offline_access`
);

CREATE TABLE IF NOT EXISTS users (
    id            INTEGER PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    -- OpenID Connect (schema version 3):
    subject       TEXT,               -- `sub`: random, opaque, survives a rename; set by the store
    display_name  TEXT,               -- `name`
    email         TEXT,               -- `email`
    email_verified INTEGER NOT NULL DEFAULT 0  -- `email_verified`
);
CREATE UNIQUE INDEX IF NOT EXISTS users_by_subject ON users (subject);

-- One row per device authorization request (RFC 8628 §3.1), from issue to redemption.
CREATE TABLE IF NOT EXISTS device_codes (
    id                INTEGER PRIMARY KEY,
    device_code_hash  TEXT NOT NULL UNIQUE,
    user_code         TEXT NOT NULL UNIQUE,   -- normalised, without the dash
    client_id         TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
    scope             TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'redeemed')),
    user_id           INTEGER REFERENCES users(id) ON DELETE CASCADE,
    interval          INTEGER NOT NULL,
    device_ip         TEXT NOT NULL,
    device_user_agent TEXT,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    decided_at        INTEGER,
    decided_ip        TEXT,
    auth_time         INTEGER             -- when the approver signed in (OIDC `auth_time`)
);
CREATE INDEX IF NOT EXISTS device_codes_by_expiry ON device_codes (expires_at);

-- A grant is one approved device login: its tokens live and die with it.
CREATE TABLE IF NOT EXISTS grants (
    id                INTEGER PRIMARY KEY,
    user_id           INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id         TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
    scope             TEXT NOT NULL,
    approved_at       INTEGER NOT NULL,
    approved_ip       TEXT,
    device_ip         TEXT,
    device_user_agent TEXT,
    created_at        INTEGER NOT NULL,
    last_used_at      INTEGER NOT NULL,
    revoked_at        INTEGER,
    auth_time         INTEGER             -- when the approver signed in (OIDC `auth_time`)
);
CREATE INDEX IF NOT EXISTS grants_by_user ON grants (user_id);

CREATE TABLE IF NOT EXISTS access_tokens (
    token_hash TEXT PRIMARY KEY,
    grant_id   INTEGER NOT NULL REFERENCES grants(id) ON DELETE CASCADE,
    scope      TEXT NOT NULL,
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS access_tokens_by_grant ON access_tokens (grant_id);

CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    grant_id   INTEGER NOT NULL REFERENCES grants(id) ON DELETE CASCADE,
    scope      TEXT NOT NULL,
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    rotated_at INTEGER,                -- set once exchanged; presenting it again is reuse
                                       -- (or, within --refresh-grace, a retry)
    rotated_from TEXT,                 -- hash of the refresh token this one was exchanged for
    grace_retries INTEGER NOT NULL DEFAULT 0  -- times it was presented again as a retry
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refresh_tokens_by_grant ON refresh_tokens (grant_id);

-- Browser sessions: the only source of "who is the user". The cookie carries a random id;
-- only its hash is stored. A row is written only when a person signs in (the anonymous
-- sign-in form's CSRF token is a cookie, see session.rs); user_id is NULL only in rows
-- written by older versions, before sign-in. Signing in makes a new session (no fixation).
CREATE TABLE IF NOT EXISTS sessions (
    id_hash      TEXT PRIMARY KEY,
    user_id      INTEGER REFERENCES users(id) ON DELETE CASCADE,
    csrf_token   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Failure counters for brute-force limits, one row per key (e.g. `code-ip:203.0.113.7`),
-- counted in fixed windows.
CREATE TABLE IF NOT EXISTS throttles (
    key          TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    failures     INTEGER NOT NULL
) WITHOUT ROWID;

-- OpenID Connect signing keys (issue #14): an RSA key for RS256 and an Ed25519 key for
-- EdDSA, made at the server's first start; `devicegate key rotate` adds successors. The
-- private key never leaves this file: no endpoint, log line or command prints it (`backup`
-- copies it with the rest). A key is in the JWKS from `created_at` on; it signs from
-- `created_at` + --key-rotation-delay until a newer key of its `alg` takes over.
CREATE TABLE IF NOT EXISTS signing_keys (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL CHECK (alg IN ('RS256', 'EdDSA')),
    private_key  TEXT NOT NULL,        -- base64 of the DER: PKCS#1 (RSA), PKCS#8 (Ed25519)
    public_jwk   TEXT NOT NULL,        -- the public half as a JWK (RFC 7517 §4), JSON
    created_at   INTEGER NOT NULL,
    retire_after INTEGER               -- set once a newer key signs instead: every token this
                                       -- one signed has expired by then; NULL: still signing
) WITHOUT ROWID;
