-- One relay at a time per conversation (docs/storage.md, "Who publishes an outbox row"). The
-- process that commits a change holds its conversation's outbox for a lease while it publishes
-- and settles the events; another process's relay takes the conversation only after the lease
-- has run out (the holder died or is stuck), and takes it by moving the lease to itself, so two
-- relays never publish the same rows at once. NULL: nobody holds it (rows saved before this
-- migration, or by save_many).

ALTER TABLE conversations ADD COLUMN IF NOT EXISTS outbox_claimed_until timestamptz;
