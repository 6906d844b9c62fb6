"""Rewrite an arithmetic problems file's reference solutions in a style the lab model never saw.

    python scripts/restyle_references.py IN.jsonl OUT.jsonl

The lab model is pretrained on problem -> reference solution, so SFT on the family's own references
clones text in the model's own style, where the paper's baseline clones off-policy human text. This
keeps every computation of a reference, in order, and changes only its wording (one "Step k:" line per
computation and a different closing line), so the same SFT on the output tests how much of the
references' strength is their style.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from intrain.truth.expressions import find_equations


def restyle(reference: str, answer: str) -> str:
    """The reference's equations as numbered steps, then the answer; ValueError if it has none."""
    equations = [f"{eq.lhs} = {eq.rhs}" for eq in find_equations(reference)]
    if not equations:
        raise ValueError("no equation in the reference solution")
    steps = [f"Step {i}: {equation}." for i, equation in enumerate(equations, 1)]
    return "\n\n".join([*steps, f"Therefore the result is \\boxed{{{answer}}}."])


def main(source: str, target: str) -> int:
    rows = []
    for line_no, line in enumerate(Path(source).read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        try:
            row["reference_solution"] = restyle(row["reference_solution"], row["answer"])
        except KeyError as err:
            print(f"{source}:{line_no}: no field {err}", file=sys.stderr)
            return 1
        except ValueError as err:
            print(f"{source}:{line_no}: {err}", file=sys.stderr)
            return 1
        rows.append(row)
    Path(target).write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f"{len(rows)} references restyled -> {target}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
