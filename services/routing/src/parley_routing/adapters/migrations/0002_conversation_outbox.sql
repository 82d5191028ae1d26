-- One write per conversation per batch (issue #18, docs/storage.md). A batch's transaction
-- writes the conversations' new versions, their events' history and one outbox row per event to
-- publish; after publishing, the rows are deleted in the next batch's transaction (or by the
-- relay), so marking events published is no second write of the conversation.
-- conversations.published_sequence is then written equal to sequence ("handed to the outbox");
-- rows saved before this migration keep the older published mark until their next save.

CREATE TABLE IF NOT EXISTS conversation_outbox (
    event_id        text   PRIMARY KEY,
    conversation_id text   COLLATE "C" NOT NULL,
    sequence        bigint NOT NULL
);
-- how far a conversation's events are published: the lowest sequence still in the outbox
CREATE INDEX IF NOT EXISTS conversation_outbox_by_conversation ON conversation_outbox (conversation_id, sequence);
