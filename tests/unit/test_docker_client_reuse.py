"""A Docker worker keeps one engine client per process: made and pinged once,
not per step; a forked pool child makes its own; an error drops it."""

from __future__ import annotations

import pytest

from workers import containers


class FakeClient:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_one_client_per_process_until_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[FakeClient] = []

    def connect() -> FakeClient:
        made.append(FakeClient())
        return made[-1]

    pid = [100]
    monkeypatch.setattr(containers, "_shared", None)
    monkeypatch.setattr(containers, "docker_client", connect)
    monkeypatch.setattr(containers.os, "getpid", lambda: pid[0])
    first = containers.shared_docker_client()
    assert containers.shared_docker_client() is first and len(made) == 1
    pid[0] = 101  # a forked child: never its parent's connection
    child = containers.shared_docker_client()
    assert child is not first and len(made) == 2 and not first.closed
    containers.forget_docker_client()
    assert child.closed
    assert containers.shared_docker_client() is not child and len(made) == 3
