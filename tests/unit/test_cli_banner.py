"""The banner of ``jobsys run`` names where the database and broker are, but
never a password in their URLs (a terminal's scrollback and CI logs keep it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from jobsys import stack
from jobsys.cli.main import main


def test_the_banner_hides_passwords_in_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown: list[str] = []

    def run_stack(settings: object, banner: str) -> int:
        shown.append(banner)
        return 0

    monkeypatch.setattr(stack, "run_stack", run_stack)
    env = {
        "JOBSYS_DATA_DIR": str(tmp_path),
        "JOBSYS_DATABASE_URL": f"sqlite:///{tmp_path / 'jobsys.db'}",
        "JOBSYS_REDIS_URL": "redis://:s3cret-redis@127.0.0.1:1/0",
        "JOBSYS_SECRET_KEY": "unit-test-secret-key-0123456789",
    }
    result = CliRunner().invoke(main, ["run"], env=env)
    assert result.exit_code == 0, result.output
    (banner,) = shown
    assert "broker          redis://***@127.0.0.1:1/0" in banner
    assert "s3cret-redis" not in banner


@pytest.mark.parametrize(
    ("sandbox", "says"),
    [("off", "NOT isolated: JOBSYS_SANDBOX=off"), ("on", "cannot be isolated here")],
)
def test_the_banner_says_whether_function_steps_are_isolated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sandbox: str, says: str
) -> None:
    from workers.sandbox import isolation

    shown: list[str] = []
    monkeypatch.setattr(stack, "run_stack", lambda settings, banner: shown.append(banner) or 0)
    monkeypatch.setattr(isolation, "bwrap_path", lambda: None)  # as on a machine without it
    env = {
        "JOBSYS_DATA_DIR": str(tmp_path),
        "JOBSYS_REDIS_URL": "redis://127.0.0.1:1/0",
        "JOBSYS_SANDBOX": sandbox,
    }
    result = CliRunner().invoke(main, ["run"], env=env)
    assert result.exit_code == 0, result.output
    (line,) = [ln for ln in shown[0].splitlines() if "function steps" in ln]
    assert says in line and ("bubblewrap (bwrap) is not installed" in line) == (sandbox == "on")
