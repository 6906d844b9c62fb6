"""Self-proposed interventions: parse them, build guided prefixes, filter them (paper §3.5).

One concern per module:

* :mod:`~intrain.interventions.parse` -- the proposer's last ``<intervention>``
  block -> :class:`ParsedIntervention` (status, content, location), through a
  tolerant repair ladder with LaTeX-aware backslash handling; never ``eval``.
  An optional ``quote`` of the erroneous text locates it by content
  (:func:`quote_substeps`) when the caller passes the shown substeps.
* :mod:`~intrain.interventions.prefix` -- :func:`guided_prefix` (attempt up to the
  error + intervention) and :func:`original_step_prefix` (+ the original step).
* :mod:`~intrain.interventions.leaks` -- :func:`leaks_answer`: does the content
  state the gold answer?
* :mod:`~intrain.interventions.selection` -- :func:`mark_not_first`: which ``ok``
  proposals of an attempt go on to the filter.
"""

from intrain.interventions.leaks import leak_normal_form, leaks_answer
from intrain.interventions.parse import (
    MIN_QUOTE_CHARS,
    STATUSES,
    ParsedIntervention,
    extract_last_block,
    parse_intervention,
    quote_substeps,
    unescape_model_string,
)
from intrain.interventions.prefix import double_newlines, guided_prefix, original_step_prefix
from intrain.interventions.selection import mark_not_first

__all__ = [
    "MIN_QUOTE_CHARS",
    "STATUSES",
    "ParsedIntervention",
    "double_newlines",
    "extract_last_block",
    "guided_prefix",
    "leak_normal_form",
    "leaks_answer",
    "mark_not_first",
    "original_step_prefix",
    "parse_intervention",
    "quote_substeps",
    "unescape_model_string",
]
