"""CSV cells a spreadsheet shows as text and never runs as a formula (OWASP "CSV injection").

The one owner of the rule, for share files (``censustrace.shares.build``) and the viewer's CSV exports
(``censustrace.viewer.shares_views``): a cell starting with ``=``, ``+``, ``-``, ``@``, tab, carriage
return or line feed gets a leading apostrophe, which Excel, LibreOffice and Google Sheets show as text.
"""

from __future__ import annotations

from typing import Final

#: Cells starting with these are formulas to Excel, LibreOffice and Google Sheets.
FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r", "\n")
_FIRST: Final = frozenset(FORMULA_START)


def safe_cell(cell: str) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a leading apostrophe."""
    # A set lookup of the first character: called for every cell of a share file.
    return "'" + cell if cell and cell[0] in _FIRST else cell


__all__ = ["FORMULA_START", "safe_cell"]
