"""CloudEvents 1.0 in Kafka binary mode: attributes travel as ``ce_*`` headers, data as JSON.

See the CloudEvents Kafka protocol binding. Parley adds one extension attribute,
``tenantid``, carried as the ``ce_tenantid`` header.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"


class MissingCloudEventHeader(ValueError):
    """A record lacks a required ce_* header."""


class CloudEventAttributes(BaseModel):
    """The context attributes of one event, as carried in Kafka headers."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Unique per source; deterministic for replays.")
    source: str = Field(examples=["/parley/ingest"])
    type: str = Field(examples=["parley.conversation.created.v1"])
    specversion: str = SPEC_VERSION
    time: datetime = Field(description="When the occurrence happened (UTC).")
    subject: str | None = Field(default=None, description="Usually the record key.")
    tenantid: str | None = Field(default=None, description="Parley extension: the tenant.")

    def to_headers(self) -> dict[str, str]:
        """Kafka headers for this event (string values)."""
        headers = {
            "ce_id": self.id,
            "ce_source": self.source,
            "ce_type": self.type,
            "ce_specversion": self.specversion,
            "ce_time": self.time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "content-type": CONTENT_TYPE,
        }
        if self.subject is not None:
            headers["ce_subject"] = self.subject
        if self.tenantid is not None:
            headers["ce_tenantid"] = self.tenantid
        return headers

    @classmethod
    def from_headers(
        cls, headers: Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]]
    ) -> CloudEventAttributes:
        """Read the attributes back from Kafka headers; raise if a required one is missing."""
        items = headers.items() if isinstance(headers, Mapping) else headers
        values = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in items if k.startswith("ce_")}
        for required in ("ce_id", "ce_source", "ce_type", "ce_specversion", "ce_time"):
            if required not in values:
                raise MissingCloudEventHeader(required)
        return cls(
            id=values["ce_id"],
            source=values["ce_source"],
            type=values["ce_type"],
            specversion=values["ce_specversion"],
            time=datetime.fromisoformat(values["ce_time"]),
            subject=values.get("ce_subject"),
            tenantid=values.get("ce_tenantid"),
        )
