-- The reports read model on PostgreSQL (parley_reports.adapters.postgres, docs/reports.md).
-- Each row is a document (jsonb) with, beside it, the columns queries filter on and the version
-- a save checks. Applied once, in one transaction, by parley_shared.postgres.migrate.

-- one channel's UTC hour: counters, serialized sketches, the ids of the events counted
CREATE TABLE IF NOT EXISTS report_buckets (
    id         text        COLLATE "C" PRIMARY KEY,
    tenant_id  text        NOT NULL,
    channel_id text        NOT NULL,
    hour       timestamptz NOT NULL,
    version    bigint      NOT NULL,
    doc        jsonb       NOT NULL
);
CREATE INDEX IF NOT EXISTS report_buckets_by_channel_hour ON report_buckets (channel_id, hour);

-- one conversation's timing state; queue, owner and oldest waiting message for the backlog
CREATE TABLE IF NOT EXISTS report_conversations (
    id            text        COLLATE "C" PRIMARY KEY,
    tenant_id     text        NOT NULL,
    channel_id    text        NOT NULL,
    queue         text,
    owner_id      text,
    waiting_since timestamptz,
    version       bigint      NOT NULL,
    doc           jsonb       NOT NULL
);
CREATE INDEX IF NOT EXISTS report_conversations_open
    ON report_conversations (channel_id, queue) WHERE queue IN ('new', 'pending');
