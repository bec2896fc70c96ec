"""The worker list: online from inspect or fresh heartbeats, lost when they stop."""

from __future__ import annotations

from datetime import UTC, datetime

from jobsys import service
from jobsys.auth import SYSTEM
from jobsys.context import Context
from jobsys.dispatch import MemoryDispatcher


def test_heartbeats_make_workers_online_then_lost_then_forgotten(
    ctx: Context, dispatcher: MemoryDispatcher
) -> None:
    service.record_heartbeat(ctx, "a@host", active=1, processed=5)
    now = datetime.now(UTC).timestamp()
    dispatcher.beats["b@host"] = {"ts": now - 60, "active": 0, "processed": 9}
    dispatcher.beats["c@host"] = {"ts": now - 2 * 24 * 3600, "active": 0, "processed": 1}
    found = {w.name: w for w in service.list_workers(ctx, SYSTEM)}
    assert found["a@host"].state == "online" and found["a@host"].active == 1
    assert found["b@host"].state == "lost" and found["b@host"].processed == 9
    assert "c@host" not in found and "c@host" not in dispatcher.beats
    assert found["b@host"].to_dict()["last_heartbeat"] is not None
