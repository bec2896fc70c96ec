"""The pure part of ``make bench``: a row of the table, its ratio and verdict,
the table as text, and the JSON written to ``bench/results.json``.

No processes, no clock: everything here is a function of the repetitions the
measuring code hands over, so tests/unit/test_bench_results.py can check it.

Conventions (the issue's, kept in one place so the table and the JSON agree):

- ``ratio`` is always "how many times worse than the baseline", lower is
  better: our time / the baseline's time for ``s`` and ``ms`` (and ``MiB``),
  the baseline's rate / ours for ``per_s``. PASS means ``ratio <= target``.
- The figures are medians of the repetitions; ``*_min`` and ``*_max`` keep
  their spread.
- A target that is an absolute limit (p99 under 50 ms, memory under 300 MiB)
  is written as a row whose baseline *is* the limit (``"absolute": true``) and
  whose target is 1.0, so the same rule ``ratio <= target`` decides it; the
  row's note says what the raw Celery figure was, when there is one.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Units a row may be in. ``MiB`` is an addition to the issue's three: the
#: memory rows have no time or rate to be in.
UNITS = ("s", "ms", "per_s", "MiB")
#: Units where a larger figure is better.
RATE_UNITS = ("per_s",)

PASS, FAIL, SKIP, ERROR, INFO = "PASS", "FAIL", "SKIP", "ERROR", "INFO"


def ratio_of(baseline: float, ours: float, unit: str) -> float:
    """Times worse than the baseline: ours/baseline for amounts, baseline/ours for rates."""
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; one of {', '.join(UNITS)}")
    if unit in RATE_UNITS:
        return baseline / ours if ours > 0 else math.inf
    return ours / baseline if baseline > 0 else math.inf


def verdict(ratio: float, target: float) -> str:
    return PASS if ratio <= target else FAIL


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between the two
    nearest ranks (numpy's default), defined for any non-empty list."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class Row:
    """One line of the table. ``baseline_reps`` and ``jobsys_reps`` are the
    figure of each repetition (already in ``unit``); an absolute row has the
    limit as its single baseline figure."""

    name: str
    unit: str
    target: float
    baseline_reps: list[float] = field(default_factory=list)
    jobsys_reps: list[float] = field(default_factory=list)
    note: str = ""
    absolute: bool = False
    #: SKIP or ERROR when the row could not be measured (the note says why).
    status: str | None = None
    #: A reference for scale, not a target: its result is INFO, never PASS or FAIL.
    reference: bool = False

    @classmethod
    def absolute_limit(
        cls, name: str, unit: str, limit: float, jobsys_reps: list[float], note: str = ""
    ) -> Row:
        """A row whose target is an absolute limit: the baseline is the limit."""
        return cls(name, unit, 1.0, [limit], list(jobsys_reps), note, absolute=True)

    @classmethod
    def skipped(cls, name: str, unit: str, target: float, why: str, status: str = SKIP) -> Row:
        return cls(name, unit, target, note=why, status=status)

    @property
    def measured(self) -> bool:
        return self.status is None and bool(self.baseline_reps) and bool(self.jobsys_reps)

    @property
    def baseline(self) -> float | None:
        return statistics.median(self.baseline_reps) if self.baseline_reps else None

    @property
    def jobsys(self) -> float | None:
        return statistics.median(self.jobsys_reps) if self.jobsys_reps else None

    @property
    def ratio(self) -> float | None:
        if not self.measured:
            return None
        assert self.baseline is not None and self.jobsys is not None
        return ratio_of(self.baseline, self.jobsys, self.unit)

    @property
    def result(self) -> str:
        if self.status is not None:
            return self.status
        if not self.measured:
            return ERROR
        if self.reference:
            return INFO
        ratio = self.ratio
        assert ratio is not None
        return verdict(ratio, self.target)

    @property
    def reps(self) -> int:
        """Repetitions behind the jobsys figure (the baseline's may differ: an
        absolute row's baseline is one figure, the limit)."""
        return len(self.jobsys_reps)

    def to_json(self, cores: int) -> dict[str, Any]:
        def spread(values: list[float]) -> tuple[float | None, float | None]:
            return (_num(min(values)), _num(max(values))) if values else (None, None)

        b_min, b_max = spread(self.baseline_reps)
        j_min, j_max = spread(self.jobsys_reps)
        return {
            "name": self.name,
            "baseline": _num(self.baseline),
            "jobsys": _num(self.jobsys),
            "unit": self.unit,
            "ratio": _num(self.ratio),
            "target": self.target,
            "reps": self.reps,
            "result": self.result,
            "baseline_min": b_min,
            "baseline_max": b_max,
            "jobsys_min": j_min,
            "jobsys_max": j_max,
            "baseline_reps": len(self.baseline_reps),
            "absolute": self.absolute,
            "note": self.note,
            "cores": cores,
        }


def _num(value: float | None) -> float | None:
    """Rounded for the file; infinity (a rate of zero) is not JSON, so None."""
    if value is None or math.isinf(value) or math.isnan(value):
        return None
    return round(value, 6)


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0 or abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 0.01:
        return f"{value:.3g}"
    return f"{value:.2e}"


def figure(values: list[float]) -> str:
    """``median [min-max]``, or the one figure there is."""
    if not values:
        return "-"
    median = statistics.median(values)
    if len(values) == 1:
        return fmt(median)
    return f"{fmt(median)} [{fmt(min(values))}-{fmt(max(values))}]"


HEADER = ("work", "unit", "baseline", "jobsys", "ratio", "target", "result")

LEGEND = (
    "Figures: median [min-max] of the repetitions (reps in bench/results.json).",
    "ratio = times worse than the baseline (time/baseline time; for per_s, baseline rate/ours);",
    "PASS when ratio <= target. Rows marked * have an absolute target: their baseline",
    "is the limit itself and their target 1.0 (the note gives the raw Celery figure).",
    "INFO rows are references for scale, not targets (the note says what they measure).",
)


def table(rows: Sequence[Row], cores: int) -> str:
    """The one table ``make bench`` prints, with its legend and notes."""
    lines = [
        (
            row.name + (" *" if row.absolute else ""),
            row.unit,
            figure(row.baseline_reps),
            figure(row.jobsys_reps),
            fmt(row.ratio),
            fmt(row.target),
            row.result,
        )
        for row in rows
    ]
    widths = [max(len(cells[i]) for cells in [HEADER, *lines]) for i in range(len(HEADER))]

    def render(cells: Sequence[str]) -> str:
        first, *rest = cells
        return "  ".join(
            [first.ljust(widths[0]), *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))]
        ).rstrip()

    out = [render(HEADER), "  ".join("-" * w for w in widths)]
    out += [render(cells) for cells in lines]
    counts = {r: sum(row.result == r for row in rows) for r in (PASS, FAIL, SKIP, ERROR, INFO)}
    out.append("")
    out.append(
        f"{len(rows)} rows on {cores} cores: "
        + ", ".join(f"{n} {r}" for r, n in counts.items() if n)
    )
    out += LEGEND
    notes = [f"  {row.name}: {row.note}" for row in rows if row.note]
    if notes:
        out += ["Notes:", *notes]
    return "\n".join(out)


def document(rows: Sequence[Row], cores: int) -> list[dict[str, Any]]:
    """What bench/results.json holds: the issue's list of rows, each also
    carrying the core count of the machine that ran it."""
    return [row.to_json(cores) for row in rows]


def write_json(path: Path, rows: Sequence[Row], cores: int) -> None:
    path.write_text(json.dumps(document(rows, cores), indent=2) + "\n")
