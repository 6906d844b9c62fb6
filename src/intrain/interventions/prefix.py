"""Guided prefixes: the attempt up to the error, then the intervention (paper §3.5).

:func:`guided_prefix` is what the filter continues and SFT trains on;
:func:`original_step_prefix` is the same cut with the original (erroneous) substep
kept instead, the baseline of the paper's Table 1.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from intrain.steps import Substep, prefix_before, split_substeps

__all__ = ["double_newlines", "guided_prefix", "original_step_prefix"]

_NEWLINE_RUN = re.compile(r"\n(?:[ \t]*\n)*")


def double_newlines(content: str) -> str:
    """Make every line of ``content`` its own substep.

    CRLF -> LF, then every run of newlines (blank / whitespace-only lines
    included) becomes exactly ``"\\n\\n"``: a single newline is doubled, an
    existing blank line is *not* turned into four newlines.
    """
    return _NEWLINE_RUN.sub("\n\n", content.replace("\r\n", "\n"))


def guided_prefix(trace: str, content: str, location: int, separator: str = "\n\n") -> str:
    """Prefix (substeps before ``location``, as in the original) + separator + content.

    The content has its newlines doubled (:func:`double_newlines`) and is
    stripped.  For ``location == 1`` the result is just the content.  Raises
    ``ValueError`` for a location outside ``1..num_substeps``.
    """
    substeps = split_substeps(trace, separator)
    prefix = prefix_before(trace, substeps, location)
    body = double_newlines(content).strip()
    if location == 1:
        return body
    return prefix + separator + body


def original_step_prefix(trace: str, substeps: Sequence[Substep], location: int) -> str:
    """Prefix plus the original (erroneous) substep ``location``: ``trace[:substeps[location-1].end]``.

    The original characters (CRLF kept) up to the end of that substep.  Raises
    ``ValueError`` for a location outside ``1..len(substeps)``, like :func:`guided_prefix`.
    """
    prefix_before(trace, substeps, location)  # validates location
    return trace[: substeps[location - 1].end]
