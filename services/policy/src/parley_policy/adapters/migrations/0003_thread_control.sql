-- Who answers each thread under Conversation Routing (docs/policy.md, Thread control): one row per
-- conversation once a thread-control change was seen; no row means Parley answers.
CREATE TABLE IF NOT EXISTS policy_thread_control (
    id            text        COLLATE "C" PRIMARY KEY,
    parley_active boolean     NOT NULL,
    at            timestamptz NOT NULL
);
