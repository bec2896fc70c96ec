"""``make bench``'s sizes: the full run is what issue 16 asks for, the quick
one stays small; the schedule row's grouping of ticks into repetitions; and
the client memory row's reading of its own peak."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.__main__ import FULL, QUICK
from bench.schedule_lateness import groups


def test_the_full_run_has_the_issues_sizes_and_targets() -> None:
    assert FULL.reps >= 3
    assert FULL.maps == ((10_000, 1.5), (100_000, 1.3), (1_000_000, 1.3))
    assert (FULL.cpu_items, FULL.calls, FULL.docker_tries) == (10_000, 200, 20)
    assert FULL.list_jobs == 100_000
    assert not FULL.keep_up  # the raw worker runs only while it is measured


def test_the_quick_run_skips_the_large_sizes() -> None:
    assert max(n for n, _ in QUICK.maps) < 100_000
    assert QUICK.calls == 20 and QUICK.list_jobs < FULL.list_jobs
    assert QUICK.reps <= FULL.reps


def test_ticks_are_cut_into_equal_groups_of_medians() -> None:
    assert groups([1.0, 2.0, 3.0, 10.0, 20.0, 30.0], 2) == [2.0, 20.0]
    assert groups([5.0, 1.0, 9.0], 3) == [5.0, 1.0, 9.0]
    assert groups([4.0, 6.0, 100.0], 1) == pytest.approx([6.0])


def test_the_client_peak_is_its_own_not_its_parents() -> None:
    """A child's ``ru_maxrss`` starts at its parent's peak (fork and exec keep
    it): the client's memory row reads VmHWM, which a fresh process starts low."""
    ballast = bytearray(300 * 1024 * 1024)
    ballast[::4096] = b"x" * len(ballast[::4096])  # touched: resident in the parent
    code = "from bench.maps import own_peak_mib; print(own_peak_mib())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    del ballast
    assert float(out.stdout) < 200, out.stdout
