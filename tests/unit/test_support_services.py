"""What tests/support/services.py promises the rest of the suite: a local run
says how many tests each missing service skipped (CI fails them instead), so a
green run that skipped everything real is visible; and each user of the shared
Redis has a database of its own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.services import REDIS_DATABASES, missing_services

ROOT = Path(__file__).parents[2]

SUMMARY = """
from tests.support.services import report_missing_services

def pytest_terminal_summary(terminalreporter):
    report_missing_services(terminalreporter)
"""
PLAIN = """
import pytest
from tests.support.services import missing

def test_needs_docker():
    missing("the docker CLI", "run scripts/ensure-docker.sh")

def test_needs_docker_too():
    missing("the docker CLI", "run scripts/ensure-docker.sh")

def test_needs_postgres():
    missing("PostgreSQL at x", "start it")

def test_skipped_for_another_reason():
    pytest.skip("not on this platform")

def test_runs():
    pass
"""


def test_the_summary_counts_skips_per_missing_service(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeconftest(SUMMARY)
    pytester.makepyfile(PLAIN)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=4)
    result.stdout.re_match_lines(
        [
            r".*skipped for a missing service.*",
            r"\s+2 skipped: the docker CLI$",
            r"\s+1 skipped: PostgreSQL at x$",
            r"\s+3 in all; CI runs them.*",
        ]
    )
    assert "not on this platform" not in "\n".join(
        line for line in result.stdout.lines if "skipped:" in line
    )


def test_in_ci_a_missing_service_fails_and_there_is_no_summary(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeconftest(SUMMARY)
    pytester.makepyfile(PLAIN)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=3, skipped=1)
    assert "skipped for a missing service" not in result.stdout.str()


def test_only_skips_for_a_missing_service_count() -> None:
    reasons = [
        "Skipped: Redis at redis://x is not available: start redis-server",
        "Skipped: Redis at redis://x is not available: start redis-server",
        "Skipped: Chromium at /usr/bin/chromium is not available: run it",
        "Skipped: flaky on this box",
    ]
    assert missing_services(reasons) == {
        "Redis at redis://x": 2,
        "Chromium at /usr/bin/chromium": 1,
    }


def test_each_user_of_the_shared_redis_has_its_own_database() -> None:
    numbers = list(REDIS_DATABASES.values())
    assert len(set(numbers)) == len(numbers) and all(0 <= n <= 15 for n in numbers)
    # and no test picks a number by hand, where it could take a stack's database
    by_hand = re.compile(r"REDIS_URL\}/\d|REDIS_URL \+ \"/\d")
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "tests").rglob("*.py")
        if by_hand.search(path.read_text())
    ]
    assert offenders == []
