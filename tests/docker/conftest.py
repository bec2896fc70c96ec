from __future__ import annotations

import pytest

from tests.support.services import require_docker


@pytest.fixture(autouse=True)
def _docker_engine() -> None:
    require_docker()
