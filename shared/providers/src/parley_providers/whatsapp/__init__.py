"""WhatsApp: the Cloud API on Graph (its client calls live in meta.client; its webhooks and rules here)."""
