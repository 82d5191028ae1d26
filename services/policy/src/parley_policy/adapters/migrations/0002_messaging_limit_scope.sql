-- WhatsApp's messaging limits belong to the business, not to one number: the customers reached
-- outside the window are counted per scope (the WhatsApp Business Account, else the channel).
ALTER TABLE policy_business_initiated RENAME COLUMN channel_id TO scope;
