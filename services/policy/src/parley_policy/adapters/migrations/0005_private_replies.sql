-- The one private reply a comment may get (docs/policy.md, Private replies): the reply that
-- claimed it, across every replica; a reply whose send failed gives it back.
CREATE TABLE IF NOT EXISTS policy_private_replies (
    conversation_id text COLLATE "C" NOT NULL,
    comment_id      text COLLATE "C" NOT NULL,
    reply_id        text             NOT NULL,
    PRIMARY KEY (conversation_id, comment_id)
);
