-- What policy checks a template send against besides its review status: how many parameter values
-- a send gives (read from the components when the template is created or listed through Parley)
-- and its category (AUTHENTICATION templates go to phone numbers only). Null: not known.
ALTER TABLE policy_templates ADD COLUMN IF NOT EXISTS parameter_count integer;
ALTER TABLE policy_templates ADD COLUMN IF NOT EXISTS category text;
