"""Reliability fixtures for in-process drills: the shared in-process fixtures
(tests/support/fixtures.py) with the example catalog loaded.

Drills that need real processes (workers, Redis, PostgreSQL) build their own
stack; these are for the ones that hammer the web app's doors.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jobsys import service
from jobsys.auth import SYSTEM
from jobsys.config import Settings
from jobsys.context import Context
from tests.support.examples import EXAMPLES
from tests.support.fixtures import make_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, catalog_dir=str(EXAMPLES))


@pytest.fixture
def ctx(ctx: Context) -> Context:
    service.reload_catalog(ctx, SYSTEM)
    return ctx
