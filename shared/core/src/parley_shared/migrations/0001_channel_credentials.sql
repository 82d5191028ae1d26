-- The vault's secrets on PostgreSQL (parley_shared.vault.PostgresCredentialStore, docs/storage.md):
-- one row per channel credential (id = the channel id), WhatsApp system-user token
-- (whatsapp:<onboarding id>) or two-step PIN (whatsapp-pin:<onboarding id>). `doc` holds the
-- ciphertexts the vault sealed with the row's id, as the MongoDB collection's documents do.

CREATE TABLE IF NOT EXISTS channel_credentials (
    id  text  COLLATE "C" PRIMARY KEY,
    doc jsonb NOT NULL
);
