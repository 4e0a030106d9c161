"""The files compliance reports are handed out as: CSV made safe for spreadsheets and plain A4 PDF.

CSV cells are made safe for spreadsheets (a leading ``= + - @`` or tab/CR is quoted with ``'``, as
OWASP advises).
"""

from __future__ import annotations

import csv
import io

from censustrace.csvsafe import safe_cell


def csv_cell(value: object) -> str:
    return safe_cell("" if value is None else str(value))


def to_csv(header: list[str], rows: list[list[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([csv_cell(h) for h in header])
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
    return out.getvalue()


def pdf(title: str, intro: list[str], sections: list[tuple[str, list[str], list[list[object]]]]) -> bytes:
    """A plain A4 PDF: a title, intro lines, then per section a heading and its rows as ``label: value``
    lines (readable when printed, no layout surprises with long values)."""
    from fpdf import FPDF

    def latin(text: object) -> str:
        # The core fonts are Latin-1; anything else is replaced rather than dropped silently.
        return str(text).encode("latin-1", "replace").decode("latin-1")

    doc = FPDF(format="A4")
    doc.set_auto_page_break(auto=True, margin=15)
    doc.set_title(latin(title))
    doc.add_page()
    doc.set_font("Helvetica", "B", 16)
    doc.multi_cell(0, 8, latin(title), new_x="LMARGIN", new_y="NEXT")
    doc.set_font("Helvetica", size=10)
    for line in intro:
        doc.multi_cell(0, 5, latin(line), new_x="LMARGIN", new_y="NEXT")
    for heading, labels, rows in sections:
        doc.ln(3)
        doc.set_font("Helvetica", "B", 12)
        doc.multi_cell(0, 7, latin(heading), new_x="LMARGIN", new_y="NEXT")
        for row in rows:
            doc.set_font("Helvetica", size=9)
            for label, value in zip(labels, row, strict=False):
                doc.multi_cell(0, 4.5, latin(f"{label}: {value}"), new_x="LMARGIN", new_y="NEXT")
            doc.ln(2)
    return bytes(doc.output())
