"""X: direct messages and posts through the X API v2."""
