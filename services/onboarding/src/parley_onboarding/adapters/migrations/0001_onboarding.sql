-- Onboarding's store on PostgreSQL (parley_onboarding.adapters.postgres, docs/storage.md).
-- Channels, teams and WhatsApp onboardings are a document (`doc`, as the MongoDB adapter writes
-- it, datetimes tagged) with a `version`: a save of version N wins only over a row below N, one
-- statement under the row's lock. What queries filter on is a column beside the document. Every
-- "one holder" (an account, a WABA, a code attempt) is a primary key.

CREATE TABLE IF NOT EXISTS channels (
    id                  text        COLLATE "C" PRIMARY KEY,
    version             integer     NOT NULL,
    tenant_id           text        NOT NULL,
    provider            text        NOT NULL,
    account_id          text        NOT NULL,
    business_account_id text,
    status              text        NOT NULL,
    token_expires_at    timestamptz,
    doc                 jsonb       NOT NULL
);
CREATE INDEX IF NOT EXISTS channels_by_tenant ON channels (tenant_id, provider);
CREATE INDEX IF NOT EXISTS channels_by_account ON channels (provider, account_id);
CREATE INDEX IF NOT EXISTS channels_by_business_account ON channels (business_account_id, provider)
    WHERE business_account_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS channels_by_expiry ON channels (token_expires_at) WHERE status = 'active';

CREATE TABLE IF NOT EXISTS teams (
    id        text    COLLATE "C" PRIMARY KEY,
    version   integer NOT NULL,
    tenant_id text    NOT NULL,
    deleted   boolean NOT NULL,
    doc       jsonb   NOT NULL
);
CREATE INDEX IF NOT EXISTS teams_by_tenant ON teams (tenant_id) WHERE NOT deleted;

CREATE TABLE IF NOT EXISTS whatsapp_onboardings (
    id         text    COLLATE "C" PRIMARY KEY,
    version    integer NOT NULL,
    tenant_id  text    NOT NULL,
    channel_id text,
    doc        jsonb   NOT NULL
);
CREATE INDEX IF NOT EXISTS whatsapp_onboardings_by_channel ON whatsapp_onboardings (channel_id)
    WHERE channel_id IS NOT NULL;

-- one row per code attempt: the primary key counts each attempt number once
CREATE TABLE IF NOT EXISTS whatsapp_code_attempts (
    onboarding_id text        NOT NULL,
    n             integer     NOT NULL,
    at            timestamptz NOT NULL,
    PRIMARY KEY (onboarding_id, n)
);

-- one tenant per WhatsApp Business Account
CREATE TABLE IF NOT EXISTS waba_claims (
    id            text        PRIMARY KEY,
    tenant_id     text        NOT NULL,
    onboarding_id text        NOT NULL,
    claimed_at    timestamptz NOT NULL
);

-- one channel per account ("<provider>:<account id>")
CREATE TABLE IF NOT EXISTS account_claims (
    id         text        PRIMARY KEY,
    channel_id text        NOT NULL,
    tenant_id  text        NOT NULL,
    claimed_at timestamptz
);

-- started Meta connections; `doc` holds the Page tokens sealed with the connection id
CREATE TABLE IF NOT EXISTS meta_connections (
    id         text        COLLATE "C" PRIMARY KEY,
    tenant_id  text        NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    doc        jsonb       NOT NULL
);
CREATE INDEX IF NOT EXISTS meta_connections_by_expiry ON meta_connections (expires_at);
CREATE INDEX IF NOT EXISTS meta_connections_by_age ON meta_connections (created_at) WHERE expires_at IS NULL;
CREATE INDEX IF NOT EXISTS meta_connections_pages ON meta_connections USING gin ((doc -> 'pages') jsonb_path_ops);
