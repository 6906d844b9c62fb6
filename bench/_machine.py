"""The `machine` record every benchmark's JSON carries: where the numbers came from and how busy it was."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any


def machine(**extra: Any) -> dict[str, Any]:
    """CPU count, architecture, Python, the 1-minute load average at the end of the run, and the torch /
    transformers versions and torch threads when the benchmark imported them; ``extra`` (e.g. the
    device) goes first."""
    info: dict[str, Any] = {**extra, "cpu_count": os.cpu_count(), "arch": platform.machine()}
    info["python"] = platform.python_version()
    if "torch" in sys.modules:
        import torch

        info.update(torch=torch.__version__, threads=torch.get_num_threads())
    if "transformers" in sys.modules:
        import transformers

        info["transformers"] = transformers.__version__
    info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return info
