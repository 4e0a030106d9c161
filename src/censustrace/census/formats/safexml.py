"""The safe streaming XML loop used by the School Census and CTF readers: bounded memory, no entity
resolution, no DTD or network access, DOCTYPE refused (XXE, billion laughs), and lxml's errors turned
into ParseErrors that quote no bytes of the file.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from lxml import etree

from censustrace.census.formats.errors import (
    ENCODING,
    FORBIDDEN,
    HEADER,
    IO_ERROR,
    LAYOUT,
    MALFORMED,
    TRUNCATED,
    ParseError,
)

# --- safe streaming XML ------------------------------------------------------------------------------

_SNIFF_BYTES: Final = 64 * 1024
_BOMS: Final = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))
_FIRST_ELEMENT = re.compile(r"<([A-Za-z_][\w.:-]*)")
_DTD_DECLARATION = re.compile(r"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)


def decode_head(head: bytes) -> str:
    """The first bytes of a file as text, for sniffing only (BOM honoured, bad bytes replaced)."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return head[len(bom) :].decode(encoding, errors="replace")
    return head.decode("utf-8", errors="replace")


def xml_prolog(text: str) -> tuple[str, str | None]:
    """The text before the root element, and the root element's name (None if not in ``text``).

    Comments and processing instructions are skipped; a DOCTYPE is left in the prolog for the caller.
    """
    pos = 0
    while True:
        m = _FIRST_ELEMENT.search(text, pos)
        if m is None:
            return text, None
        before = text[: m.start()]
        # A "<name" inside an unclosed comment or PI is not the root: continue after it closes.
        if before.count("<!--") > before.count("-->"):
            end = text.find("-->", m.start())
        elif before.count("<?") > before.count("?>"):
            end = text.find("?>", m.start())
        else:
            return before, m[1]
        if end == -1:
            return text, None
        pos = end


@dataclass(frozen=True, slots=True)
class XmlLayout:
    """Where a format keeps its header and pupils: ``root/header`` and ``root/container/record``."""

    root: str
    header: str
    container: str
    record: str


class _Source:
    """The file as lxml reads it, remembering whether the end was reached (to tell truncation apart)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self.eof = False
        self.consumed = 0
        self.tail = b""

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        if data:
            self.consumed += len(data)
            self.tail = data[-4:]
        else:
            self.eof = True
        return data


def _ends_mid_utf8_character(tail: bytes) -> bool:
    """Whether ``tail`` (the last bytes of a file) stops part way through a UTF-8 sequence."""
    for back in range(1, min(4, len(tail)) + 1):
        byte = tail[-back]
        if byte & 0xC0 != 0x80:  # a lead byte (or ASCII): does its sequence need more than we have?
            need = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4 if byte & 0xF8 == 0xF0 else 1
            return need > back
    return False


_ENCODING_ERRORS: Final = frozenset(
    {
        etree.ErrorTypes.ERR_INVALID_ENCODING,
        etree.ErrorTypes.ERR_UNSUPPORTED_ENCODING,
        etree.ErrorTypes.ERR_UNKNOWN_ENCODING,
    }
)


# libxml2 error numbers to their constant names: fixed strings, safe to put in a message.
_ERROR_NAMES: Final[dict[int, str]] = {
    value: name for name, value in vars(etree.ErrorTypes).items() if name.startswith("ERR_")
}


def _classify(exc: Any, source: _Source, path: Path, root_seen: bool) -> ParseError:
    """Turn an lxml syntax error into a ParseError without any of lxml's text (it can quote bytes).

    lxml only reports an error at ``close()`` (after the last read) when the document stopped part
    way, so an error after EOF is truncation. The exception: lxml's generic "no element found"
    (ERR_INTERNAL_ERROR) after the root was seen, which hides a real syntax error (for example an
    undeclared entity when entities are not resolved).
    """
    line, column = exc.position if exc.position and exc.position[0] else (None, None)
    kind = _ERROR_NAMES.get(exc.code)
    label = f" [{kind}]" if kind else ""
    if source.consumed == 0:
        return ParseError(TRUNCATED, path, "the file is empty")
    if exc.code in _ENCODING_ERRORS and not (source.eof and _ends_mid_utf8_character(source.tail)):
        return ParseError(
            ENCODING, path, "bytes are not valid in the declared encoding", line=line, column=column
        )
    if source.eof and not (exc.code == etree.ErrorTypes.ERR_INTERNAL_ERROR and root_seen):
        return ParseError(TRUNCATED, path, "the file ends before the document is complete", line=line)
    return ParseError(MALFORMED, path, f"not well-formed XML{label}", line=line, column=column)


def _has_dtd(elem: Any) -> bool:
    info = elem.getroottree().docinfo
    return bool(info.doctype) or info.internalDTD is not None or info.externalDTD is not None


def open_binary(path: Path) -> IO[bytes]:
    try:
        return path.open("rb")
    except OSError as exc:
        raise ParseError(IO_ERROR, path, f"cannot be opened ({exc.strerror})") from None


def stream_xml(path: Path, layout: XmlLayout) -> Generator[tuple[bool, Any], None, None]:
    """Yield ``(True, header_element)`` once, then ``(False, pupil_element)`` for each pupil, in order.

    Memory stays bounded whatever the file size: each element is cleared after the consumer has had
    it, and earlier pupils are removed from their parent. Entities are never resolved, no DTD or
    network resource is loaded, and a DOCTYPE (the carrier of XXE and billion-laughs payloads) is
    refused outright with CT-PARSE-FORBIDDEN. Closing the generator early stops reading the file.
    """
    with open_binary(path) as fh:
        head = fh.read(_SNIFF_BYTES)
        prolog, root_name = xml_prolog(decode_head(head))
        if _DTD_DECLARATION.search(prolog):
            raise ParseError(FORBIDDEN, path, "DOCTYPE and entity declarations are not accepted")
        if root_name is not None and root_name != layout.root:
            raise ParseError(LAYOUT, path, f"the root element must be {layout.root}", item=root_name)
        fh.seek(0)
        source = _Source(fh)
        # Only "end" events (a "start" per pupil would cost a Python step each for nothing), and no
        # whitespace-only text nodes between elements (no item is read from them: leaf texts are stripped).
        events = etree.iterparse(
            source,
            events=("end",),
            tag=(layout.root, layout.header, layout.record),
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            remove_blank_text=True,
        )
        root: Any = None
        container: Any = None  # the pupils' parent, once checked
        header_seen = False
        try:
            for _, elem in events:
                if root is None:
                    # Belt and braces for prologs the sniff above cannot read (e.g. UTF-16 without BOM).
                    if _has_dtd(elem):
                        raise ParseError(FORBIDDEN, path, "DOCTYPE and entity declarations are not accepted")
                    root = elem.getroottree().getroot()
                    if root.tag != layout.root:
                        raise ParseError(LAYOUT, path, f"the root element must be {layout.root}")
                parent = elem.getparent()
                if elem.tag == layout.record:
                    if parent is not container:
                        if parent is None or parent.tag != layout.container or parent.getparent() is not root:
                            raise ParseError(
                                LAYOUT, path, f"{layout.record} must be in {layout.root}/{layout.container}"
                            )
                        container = parent
                    if not header_seen:
                        raise ParseError(
                            HEADER,
                            path,
                            "is missing before the pupils",
                            item=f"{layout.root}/{layout.header}",
                        )
                    yield False, elem
                    elem.clear()
                    while elem.getprevious() is not None:
                        del parent[0]
                elif elem.tag == layout.header and parent is root and not header_seen:
                    header_seen = True
                    yield True, elem
                    elem.clear()
        except etree.XMLSyntaxError as exc:
            raise _classify(exc, source, path, root is not None) from None
        if root is None:
            root = events.root
            if root is not None and _has_dtd(root):
                raise ParseError(FORBIDDEN, path, "DOCTYPE and entity declarations are not accepted")
            if root is None or root.tag != layout.root:
                raise ParseError(LAYOUT, path, f"the root element must be {layout.root}")
        if not header_seen:
            raise ParseError(HEADER, path, "is missing", item=f"{layout.root}/{layout.header}")
