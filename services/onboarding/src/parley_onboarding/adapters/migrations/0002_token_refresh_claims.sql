-- One row per spending of a refresh token that works once (X rotates them on every refresh): the
-- primary key lets exactly one replica spend it; `n` > 0 is a takeover of a claim whose holder
-- stopped before finishing (parley_onboarding.service, refresh_grants). `grant_digest` is the
-- token's SHA-256, never the token.
CREATE TABLE IF NOT EXISTS token_refresh_claims (
    channel_id   text        NOT NULL,
    grant_digest text        NOT NULL,
    n            integer     NOT NULL,
    at           timestamptz NOT NULL,
    PRIMARY KEY (channel_id, grant_digest, n)
);
CREATE INDEX IF NOT EXISTS token_refresh_claims_by_age ON token_refresh_claims (at);
