-- Policy's store on PostgreSQL (parley_policy.adapters.postgres, docs/storage.md). Every
-- "exactly once" is a primary key; the conversation document is the one inbound_document builds.

CREATE TABLE IF NOT EXISTS policy_conversations (
    id                       text        COLLATE "C" PRIMARY KEY,
    last_customer_message_at timestamptz,
    doc                      jsonb       NOT NULL
);
-- the window sweep reads conversations by the time of their customer's last message
CREATE INDEX IF NOT EXISTS policy_conversations_by_window
    ON policy_conversations (last_customer_message_at, id) WHERE last_customer_message_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS policy_decisions (
    key         text        PRIMARY KEY,
    result      jsonb       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS policy_deliveries (
    reply_id            text PRIMARY KEY,
    provider_message_id text NOT NULL
);

-- how many of a channel-second's slots are taken (one row per channel and second)
CREATE TABLE IF NOT EXISTS policy_rate_slots (
    channel_id text    NOT NULL,
    second     bigint  NOT NULL,
    taken      integer NOT NULL,
    PRIMARY KEY (channel_id, second)
);
CREATE INDEX IF NOT EXISTS policy_rate_slots_by_second ON policy_rate_slots (second);

CREATE TABLE IF NOT EXISTS policy_window_notices (
    notice_id text        PRIMARY KEY,
    at        timestamptz NOT NULL
);

-- WhatsApp customers a number reached outside the window (messaging limits, rolling 24 hours)
CREATE TABLE IF NOT EXISTS policy_business_initiated (
    channel_id   text        NOT NULL,
    recipient_id text        NOT NULL,
    at           timestamptz NOT NULL,
    PRIMARY KEY (channel_id, recipient_id)
);
CREATE INDEX IF NOT EXISTS policy_business_initiated_by_time ON policy_business_initiated (channel_id, at);

-- WhatsApp templates and their review status, per channel
CREATE TABLE IF NOT EXISTS policy_templates (
    channel_id text NOT NULL,
    name       text NOT NULL,
    language   text NOT NULL,
    status     text NOT NULL,
    PRIMARY KEY (channel_id, name, language)
);
