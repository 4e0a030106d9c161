"""Errors of the share steps, with their stable codes (``CT-SHARE-*``: see docs/shares.md)."""

from __future__ import annotations

from typing import Any, Final

from censustrace.errors import CensustraceError


class ShareError(CensustraceError):
    """A share step cannot go on: unknown share, wrong state, unsupported field or transform."""

    code = "CT-SHARE"


class ShareBlocked(ShareError):
    """The policy check refused the agreement: a blocked share is recorded, nothing is built or sent.

    ``share`` is the blocked share's summary (its reasons included)."""

    code = "CT-SHARE-BLOCKED"

    def __init__(self, message: str, share: dict[str, Any]) -> None:
        super().__init__(message)
        self.share = share


class ShareLineageError(ShareError):
    """The share's lineage event could not be committed to the lineage store: nothing is released."""

    code = "CT-SHARE-LINEAGE"


class ShareOutboxError(ShareError):
    """The recipient's outbox folder cannot be written: nothing is released."""

    code = "CT-SHARE-OUTBOX"


NOT_FOUND: Final = "CT-SHARE-NOT-FOUND"
STATE: Final = "CT-SHARE-STATE"
POLICY_CHANGED: Final = "CT-SHARE-POLICY-CHANGED"
FIELD: Final = "CT-SHARE-FIELD"
TAMPERED: Final = "CT-SHARE-TAMPERED"


__all__ = [
    "FIELD",
    "NOT_FOUND",
    "POLICY_CHANGED",
    "STATE",
    "TAMPERED",
    "ShareBlocked",
    "ShareError",
    "ShareLineageError",
    "ShareOutboxError",
]
