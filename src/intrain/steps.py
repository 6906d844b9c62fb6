"""Step segmentation of reasoning traces (paper §3.3).

A *substep* is a chunk of a response separated by a blank line (``"\\n\\n"`` by
default, configurable).  The reference code does ``attempt.split("\\n\\n")`` and
numbers every chunk; this module does the same with three deliberate
refinements:

* **CRLF.**  Splitting is done on a *normalised view* of the trace in which every
  ``"\\r\\n"`` is replaced by ``"\\n"`` (the separator is normalised the same way),
  so ``"\\r\\n\\r\\n"`` (and mixed ``"\\n\\r\\n"``) separate substeps.  While
  normalising we keep, for every character of the normalised view, the index of
  the character it came from in the original string (a ``"\\n"`` produced from
  ``"\\r\\n"`` maps to the ``"\\r"``), plus a sentinel ``len(trace)``.  A chunk
  ``[i, j)`` of the normalised view therefore maps back to
  ``[orig[i], orig[j])`` of the original string.  ``Substep.text`` is the
  *normalised* chunk; ``Substep.start``/``Substep.end`` are offsets into the
  *original* string, with the invariant
  ``trace[s.start:s.end].replace("\\r\\n", "\\n") == s.text``.
* **Empty chunks** (empty or whitespace-only, e.g. from four newlines in a row or
  leading/trailing blank lines) are dropped from the numbering; their characters
  simply belong to no substep.  Offsets of the remaining substeps stay exact.
* Chunk text is otherwise kept verbatim (no stripping), exactly like
  ``str.split``.

``prefix_before`` returns the original text of everything before a substep,
i.e. ``trace[:previous_substep.end]`` -- identical to
``trace[:substeps[location-1].start]`` with the trailing separator(s) (and any
dropped empty chunks between the two substeps) removed.  For a trace without
empty chunks this is exactly the reference ``"\\n\\n".join(steps[:location-1])``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_SEPARATOR",
    "Substep",
    "prefix_before",
    "render_numbered",
    "split_substeps",
]

DEFAULT_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Substep:
    """One numbered substep of a trace.

    ``index`` is 1-based.  ``text`` is the chunk with CRLF normalised to LF;
    ``start``/``end`` are character offsets into the *original* trace.
    """

    index: int
    text: str
    start: int
    end: int


def _normalise_crlf(text: str) -> tuple[str, list[int]]:
    """Return (text with CRLF -> LF, map normalised index -> original index).

    The map has one extra trailing entry equal to ``len(text)`` so that an
    exclusive end offset can be mapped too.
    """
    if "\r\n" not in text:
        return text, list(range(len(text) + 1))
    out: list[str] = []
    orig: list[int] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == "\r" and i + 1 < n and text[i + 1] == "\n":
            out.append("\n")
            orig.append(i)
            i += 2
        else:
            out.append(text[i])
            orig.append(i)
            i += 1
    orig.append(n)
    return "".join(out), orig


def split_substeps(trace: str, separator: str = DEFAULT_SEPARATOR) -> list[Substep]:
    """Split ``trace`` into numbered substeps on ``separator``.

    See the module docstring for CRLF handling and empty-chunk rules.
    """
    if not isinstance(trace, str):
        raise TypeError(f"trace must be a str, got {type(trace).__name__}")
    sep = separator.replace("\r\n", "\n")
    if not sep:
        raise ValueError("separator must be a non-empty string")
    norm, orig = _normalise_crlf(trace)
    substeps: list[Substep] = []
    pos = 0
    n = len(norm)
    while pos <= n:
        nxt = norm.find(sep, pos)
        end = n if nxt == -1 else nxt
        chunk = norm[pos:end]
        if chunk.strip():
            substeps.append(Substep(index=len(substeps) + 1, text=chunk, start=orig[pos], end=orig[end]))
        if nxt == -1:
            break
        pos = nxt + len(sep)
    return substeps


def render_numbered(substeps: Sequence[Substep]) -> str:
    """Render substeps as the proposal prompt shows them.

    ``"**Substep 1:** text\\n\\n**Substep 2:** ..."`` (1-based, joined by a blank line).
    """
    return "\n\n".join(f"**Substep {s.index}:** {s.text}" for s in substeps)


def _check_location(location: object, num_substeps: int) -> int:
    if isinstance(location, bool) or not isinstance(location, int):
        raise ValueError(f"location must be an int, got {location!r}")
    if location < 1:
        raise ValueError(f"location must be >= 1, got {location}")
    if location > num_substeps:
        raise ValueError(f"location {location} is past the end of the trace ({num_substeps} substeps)")
    return location


def prefix_before(trace: str, substeps: Sequence[Substep], location: int) -> str:
    """Exact original text of the trace before substep ``location`` (1-based).

    ``location == 1`` gives ``""``; ``location == len(substeps)`` gives everything
    before the last substep.  The result is ``trace[:substeps[location-2].end]``:
    the original characters (CRLF kept) up to the end of the previous substep,
    without the separator that followed it.

    Raises ``ValueError`` when ``location`` is not an int in ``1..len(substeps)``
    (callers mark such proposals ``bad_location``).
    """
    _check_location(location, len(substeps))
    if location == 1:
        return ""
    return trace[: substeps[location - 2].end]
