"""Open Referral HSDS 1.1 datapackage reader for the laptop: the pure parser shared with the server."""

from __future__ import annotations

from sync.hsds import (
    HSDS_NAMESPACE,
    NEED_KEYWORDS,
    STATUS_ACTIVE,
    HsdsError,
    Problem,
    ServiceRecord,
    classify,
    html_to_text,
    parse_datapackage,
    service_id,
)

__all__ = [
    "HSDS_NAMESPACE",
    "NEED_KEYWORDS",
    "STATUS_ACTIVE",
    "HsdsError",
    "Problem",
    "ServiceRecord",
    "classify",
    "html_to_text",
    "parse_datapackage",
    "service_id",
]
