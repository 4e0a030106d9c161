"""Errors with stable codes. Messages name the file, field or line, never a pupil identifier."""

from __future__ import annotations


class CensustraceError(Exception):
    """Base error: ``code`` is stable (documented, machine-readable), ``message`` is for people."""

    code = "CT000"
    exit_code = 1

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class UsageError(CensustraceError):
    """Nonsense or conflicting arguments (CLI exit code 2)."""

    code = "CT-USAGE"
    exit_code = 2
