-- Routing's conversations on PostgreSQL (parley_routing.adapters.postgres, docs/storage.md).
-- The document is the aggregate as Conversation.to_document() gives it; the columns beside it
-- are what queries filter and sort on, and what a save checks (version) or a publish moves
-- (published_sequence). Applied once, in one transaction, by parley_shared.postgres.migrate.

CREATE TABLE IF NOT EXISTS conversations (
    id                 text        COLLATE "C" PRIMARY KEY,
    tenant_id          text        NOT NULL,
    channel_id         text        NOT NULL,
    queue              text        NOT NULL,
    owner_id           text,
    last_activity_at   timestamptz NOT NULL,
    version            bigint      NOT NULL,
    sequence           bigint      NOT NULL,
    published_sequence bigint      NOT NULL,
    -- events saved but not known to be on Kafka: a newer save raises sequence, so a late
    -- published mark for an older one cannot close the outbox over it
    outbox_pending     boolean     GENERATED ALWAYS AS (sequence > published_sequence) STORED,
    doc                jsonb       NOT NULL
);

-- the agent inbox, newest activity first: one index scan per visible channel (and queue),
-- merged; the owner's list by its own index. Scanned backwards for DESC order.
CREATE INDEX IF NOT EXISTS conversations_by_channel_activity
    ON conversations (channel_id, last_activity_at, id);
CREATE INDEX IF NOT EXISTS conversations_by_queue_activity
    ON conversations (channel_id, queue, last_activity_at, id);
CREATE INDEX IF NOT EXISTS conversations_by_owner_activity
    ON conversations (tenant_id, owner_id, last_activity_at, id) WHERE owner_id IS NOT NULL;
-- the outbox relay reads only the few rows with unpublished events
CREATE INDEX IF NOT EXISTS conversations_outbox ON conversations (id) WHERE outbox_pending;

-- notes live outside the conversation document, one row each
CREATE TABLE IF NOT EXISTS conversation_notes (
    note_id         text        PRIMARY KEY,
    conversation_id text        NOT NULL,
    tenant_id       text        NOT NULL,
    author_id       text        NOT NULL,
    text            text        NOT NULL,
    created_at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS conversation_notes_by_conversation
    ON conversation_notes (conversation_id, created_at, note_id);

-- provider message ids of recorded messages, remembered until expires_at (prune_seen)
CREATE TABLE IF NOT EXISTS conversation_seen_messages (
    conversation_id     text        NOT NULL,
    provider_message_id text        NOT NULL,
    expires_at          timestamptz NOT NULL,
    PRIMARY KEY (conversation_id, provider_message_id)
);
CREATE INDEX IF NOT EXISTS conversation_seen_messages_by_expiry ON conversation_seen_messages (expires_at);

-- every published event, for the agent API's history of a conversation
CREATE TABLE IF NOT EXISTS conversation_history (
    event_id        text   PRIMARY KEY,
    conversation_id text   NOT NULL,
    sequence        bigint NOT NULL,
    type            text   NOT NULL,
    data            jsonb  NOT NULL
);
CREATE INDEX IF NOT EXISTS conversation_history_by_sequence ON conversation_history (conversation_id, sequence);
