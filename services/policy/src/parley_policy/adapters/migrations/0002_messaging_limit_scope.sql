-- WhatsApp's messaging limits belong to the business, not to one number: the customers reached
-- outside the window are counted per scope (the WhatsApp Business Account, else the channel).
ALTER TABLE policy_business_initiated RENAME COLUMN channel_id TO scope;

-- the provider's messaging limit per scope, as its latest webhook set it (null: unlimited)
CREATE TABLE IF NOT EXISTS policy_messaging_limits (
    scope           text        PRIMARY KEY,
    messaging_limit integer,
    at              timestamptz NOT NULL
);
