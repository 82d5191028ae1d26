"""Graph API versions: when Meta released each one and until when it answers it (pure).

This table is the only place in Parley that names a Graph API version; clients build their paths
from the ``graph_api_version`` setting (empty: :data:`DEFAULT_GRAPH_API_VERSION`). Source: the
Graph API changelog, "Available Graph API Versions"
(https://developers.facebook.com/documentation/development/graph-api/changelog, updated
2026-10-29; the same dates are on https://developers.facebook.com/docs/graph-api/changelog/versions/).
A version is available for at least two years after its release (Platform Versioning,
https://developers.facebook.com/docs/graph-api/guides/versioning); Meta publishes the exact end
date later, so the newest versions have none yet ("TBD" in the changelog).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from parley_providers.base import ApiVersionStatus

__all__ = [
    "DEFAULT_GRAPH_API_VERSION",
    "GRAPH_API_VERSIONS",
    "VERSION_FORMAT",
    "WARN_BEFORE",
    "GraphVersion",
    "graph_version_status",
]


@dataclass(frozen=True, slots=True)
class GraphVersion:
    """One Graph API version: released on ``released``, answered until ``available_until``."""

    version: str
    released: date
    available_until: date | None
    """None: Meta has not announced the end yet (at least two years after the release)."""


def _versions(*rows: GraphVersion) -> dict[str, GraphVersion]:
    return {row.version: row for row in rows}


GRAPH_API_VERSIONS = _versions(
    GraphVersion("v19.0", date(2024, 1, 23), date(2026, 5, 21)),
    GraphVersion("v20.0", date(2024, 5, 21), date(2026, 9, 24)),
    GraphVersion("v21.0", date(2024, 10, 2), date(2027, 1, 21)),
    GraphVersion("v22.0", date(2025, 1, 21), date(2027, 5, 20)),
    GraphVersion("v23.0", date(2025, 5, 29), date(2027, 10, 8)),
    GraphVersion("v24.0", date(2025, 10, 8), date(2028, 2, 18)),
    GraphVersion("v25.0", date(2026, 2, 18), date(2028, 7, 29)),
    GraphVersion("v26.0", date(2026, 7, 29), None),
    GraphVersion("v27.0", date(2026, 11, 4), None),
)
"""Every version Parley may be configured with, newest last."""

DEFAULT_GRAPH_API_VERSION = "v25.0"
"""The version Parley calls unless the setting names another: the newest one whose end date Meta
has published (2028-07-29), and the one the sandbox and the tests run against."""

WARN_BEFORE = timedelta(days=90)
"""A process configured with a version that ends within this long warns at start."""

VERSION_FORMAT = re.compile(r"^v\d+\.\d+$")


def graph_version_status(version: str, today: date) -> ApiVersionStatus:
    """How long ``version`` is still answered, and the warning a process should log, if any."""
    known = GRAPH_API_VERSIONS.get(version)
    if known is None:
        return ApiVersionStatus(
            provider="meta",
            api="graph",
            version=version,
            ends_on=None,
            days_left=None,
            warning=(
                f"Graph API {version} is not in Parley's table of Graph API versions "
                "(parley_providers/meta/versions.py): its end of life is unknown"
            ),
        )
    if known.available_until is None:
        return ApiVersionStatus("meta", "graph", version, None, None, None)
    days_left = (known.available_until - today).days
    warning = None
    if days_left < 0:
        warning = (
            f"Graph API {version} ended on {known.available_until.isoformat()}: "
            "move to a current version (docs/operations.md, moving the Graph API version)"
        )
    elif days_left <= WARN_BEFORE.days:
        warning = (
            f"Graph API {version} ends on {known.available_until.isoformat()}, in {days_left} days: "
            "move to a current version (docs/operations.md, moving the Graph API version)"
        )
    return ApiVersionStatus("meta", "graph", version, known.available_until, days_left, warning)
