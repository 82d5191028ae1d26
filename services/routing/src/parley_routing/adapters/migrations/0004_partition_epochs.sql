-- Partition ownership epochs (issue #21, docs/storage.md). A routing replica assigned an inbound
-- partition takes the next epoch for it (an upsert that adds one, so epochs only rise); each
-- batch's transaction carries the epochs of its partitions and reads these rows FOR SHARE before
-- it commits: a newer epoch refuses the whole batch, and a replica taking an epoch waits for the
-- batches that checked the old one to commit, so the new owner reads after their writes.

CREATE TABLE IF NOT EXISTS routing_partition_epochs (
    topic     text   COLLATE "C" NOT NULL,
    partition int    NOT NULL,
    epoch     bigint NOT NULL,
    PRIMARY KEY (topic, partition)
);
