"""Channels and roles for reports, from the shared channel and team read models."""

from __future__ import annotations

from collections.abc import Callable

from parley_events import BusinessHours, Provider
from parley_shared.channels import DirectoryRoles, KafkaChannelDirectory


class DirectoryChannels(DirectoryRoles):
    """Roles as the read models give them, and each channel's provider (``ChannelDirectory``)."""

    def provider_of(self, channel_id: str) -> Provider | None:
        channel = self.channels.by_id.get(channel_id)
        return None if channel is None else channel.provider

    def business_hours_of(self, channel_id: str) -> BusinessHours | None:
        """The channel's business hours as its snapshot has them (None: none, or not known)."""
        return hours_from(self.channels)(channel_id)


def hours_from(channels: KafkaChannelDirectory) -> Callable[[str], BusinessHours | None]:
    """A channel's business hours from the channel read model (None: none, or not known)."""

    def hours_of(channel_id: str) -> BusinessHours | None:
        channel = channels.by_id.get(channel_id)
        return None if channel is None else channel.business_hours

    return hours_of
