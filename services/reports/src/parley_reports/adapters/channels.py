"""Channels and roles for reports, from the shared channel and team read models."""

from __future__ import annotations

from parley_events import Provider
from parley_shared.channels import DirectoryRoles


class DirectoryChannels(DirectoryRoles):
    """Roles as the read models give them, and each channel's provider (``ChannelDirectory``)."""

    def provider_of(self, channel_id: str) -> Provider | None:
        channel = self.channels.by_id.get(channel_id)
        return None if channel is None else channel.provider
