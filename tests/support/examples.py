"""The example catalog shipped in ``jobs/`` and the image allow-list that the
in-process drills run under."""

from __future__ import annotations

from pathlib import Path

EXAMPLES = Path(__file__).parents[2] / "jobs"
#: busybox is fine, ubuntu is not.
IMAGES = ("jobsys/*", "busybox*")
