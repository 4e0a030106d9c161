"""The one place censustrace changes Great Expectations' behaviour: a memo of expectation
configurations while a validation runs, applied only on the GX versions it was verified on.

GX 1.24 rebuilds ``Expectation.configuration`` (a pydantic ``dict()`` of the whole expectation) on every
kwarg lookup, about 90 times per expectation per validation: a third of the CPU of validating a
school-sized file. The memo keeps the first build of each, and is only ever a speed-up: results are the
same without it (``tests/quality/test_engine.py``). It relies on GX internals (``configuration`` a
property of ``Expectation``, expectations not changed while a validation runs), so on a GX release
outside :data:`VERIFIED` it is skipped, with a warning coded ``CT-GX-COMPAT``, and GX runs as shipped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

logger = logging.getLogger(__name__)

#: GX (major, minor) releases the memo was verified on (results identical with and without it).
VERIFIED: Final = frozenset({(1, 24)})
#: Stable code of the warning logged when the memo is skipped.
SKIPPED: Final = "CT-GX-COMPAT"
_VERSION: Final = re.compile(r"(\d+)\.(\d+)")
_warned: set[str] = set()


def memo_applies(version: str) -> bool:
    """The memo was verified on this GX version (``great_expectations.__version__``)."""
    found = _VERSION.match(version)
    return found is not None and (int(found[1]), int(found[2])) in VERIFIED


@contextmanager
def configurations_memoised() -> Iterator[None]:
    """Within one validation, build each expectation's ``configuration`` once.

    The expectations GX builds for a validation are not changed while it runs, so the first build is
    kept, keyed by object identity, until the validation ends (callers hold the GX runtime lock; the
    property is put back afterwards). Outside :data:`VERIFIED`, nothing is patched."""
    import great_expectations as gx
    from great_expectations.expectations.expectation import Expectation

    original = Expectation.__dict__.get("configuration")
    if not memo_applies(gx.__version__) or not isinstance(original, property):
        if gx.__version__ not in _warned:
            _warned.add(gx.__version__)
            logger.warning(
                "%s: great_expectations %s is not a version the configuration memo was verified on "
                "(%s); validating without it",
                SKIPPED,
                gx.__version__,
                ", ".join(f"{major}.{minor}" for major, minor in sorted(VERIFIED)),
            )
        yield
        return
    built: dict[int, tuple[Any, Any]] = {}

    def configuration(self: Any) -> Any:
        hit = built.get(id(self))
        if hit is not None and hit[0] is self:
            return hit[1]
        value = original.fget(self)  # type: ignore[misc]
        built[id(self)] = (self, value)
        return value

    setattr(Expectation, "configuration", property(configuration))  # noqa: B010  (mypy: a method)
    try:
        yield
    finally:
        setattr(Expectation, "configuration", original)  # noqa: B010
        built.clear()


__all__ = ["SKIPPED", "VERIFIED", "configurations_memoised", "memo_applies"]
