"""Settings of the reports process."""

from __future__ import annotations

from parley_shared.auth import ApiSettings
from pydantic import Field


class ReportsSettings(ApiSettings):
    """``parley-reports``: the Supervisors' reports, a read model of the public topics."""

    http_port: int = 8085
    max_report_days: int = Field(
        default=366, ge=1, description="The longest date range one report may cover, in days."
    )
