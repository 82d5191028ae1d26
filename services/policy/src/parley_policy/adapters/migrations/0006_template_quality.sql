-- Meta's quality rating of a template (GREEN, YELLOW, RED, UNKNOWN), told with a template send and
-- never a refusal by itself: Meta pauses a template of sustained low quality, which arrives as a
-- status (PAUSED). Null: not known yet.
ALTER TABLE policy_templates ADD COLUMN IF NOT EXISTS quality text;
