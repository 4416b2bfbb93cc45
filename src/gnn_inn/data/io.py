"""Reading triple files: ``head<TAB>relation<TAB>tail``, one per line.

Accepted: a UTF-8 byte-order mark, CRLF or LF endings, trailing blanks, blank lines at the end
of the file, one header line ``head<TAB>relation<TAB>tail`` at the top. Errors
(:class:`DataFormatError`, message ``file:line: what — what to do``): a line without exactly
three tab-separated fields, an empty field, a blank line followed by more data, a header line
anywhere but the first line.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

HEADER = ("head", "relation", "tail")


class DataFormatError(ValueError):
    """A triple file is malformed; the message names file and line."""


def read_triples(path: str | Path, *, duplicates: str = "drop") -> list[tuple[str, str, str]]:
    """Read a TSV triple file.

    Args:
        path: the file.
        duplicates: what to do with a triple that occurs twice in the file: ``"drop"`` (keep
            the first, log a warning with the count and the first repeat's line), ``"keep"``
            (warn, keep all) or ``"error"``.

    Returns:
        the triples as ``(head, relation, tail)`` strings, in file order.
    """
    if duplicates not in ("drop", "keep", "error"):
        raise ValueError(f"duplicates must be 'drop', 'keep' or 'error', got {duplicates!r}")
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a leading BOM is not part of a name
    except FileNotFoundError:
        raise FileNotFoundError(f"triple file not found: {path}") from None
    except IsADirectoryError:
        raise DataFormatError(f"{path}: is a folder, not a triple file") from None
    except UnicodeDecodeError as e:
        line = text_line_of_offset(path.read_bytes(), e.start)
        raise DataFormatError(f"{path}:{line}: not valid UTF-8 ({e.reason})") from None
    lines = text.split("\n")
    while lines and lines[-1].strip() == "":
        lines.pop()
    out: list[tuple[str, str, str]] = []
    seen: dict[tuple[str, str, str], int] = {}
    dup_count, first_dup = 0, None
    for no, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r").rstrip(" \t")
        if not line.strip():
            raise DataFormatError(f"{path}:{no}: blank line inside the file; remove it")
        fields = line.split("\t")
        if len(fields) != 3:
            raise DataFormatError(
                f"{path}:{no}: expected 3 tab-separated fields (head, relation, tail), got "
                f"{len(fields)}: {line[:80]!r}"
            )
        fields = [f.strip() for f in fields]
        if any(f == "" for f in fields):
            which = ", ".join(n for n, f in zip(HEADER, fields) if f == "")
            raise DataFormatError(f"{path}:{no}: empty field ({which}): {line[:80]!r}")
        triple = (fields[0], fields[1], fields[2])
        if tuple(f.lower() for f in triple) == HEADER:
            if no == 1:
                continue
            raise DataFormatError(
                f"{path}:{no}: header line repeated (a header is allowed only on line 1)"
            )
        if triple in seen:
            dup_count += 1
            if first_dup is None:
                first_dup = (no, seen[triple])
            if duplicates == "error":
                raise DataFormatError(
                    f"{path}:{no}: duplicate triple {triple} (first on line {seen[triple]})"
                )
            if duplicates == "drop":
                continue
        else:
            seen[triple] = no
        out.append(triple)
    if dup_count:
        log.warning(
            "%s: %d duplicate triple(s) %s (first repeat on line %d, same as line %d)",
            path, dup_count, "dropped" if duplicates == "drop" else "kept", *first_dup,
        )
    return out


def text_line_of_offset(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1
