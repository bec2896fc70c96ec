"""What a worker checks of a function step's sandbox before it starts one."""

from __future__ import annotations

import pytest

from jobsys.context import Context


def test_a_worker_that_does_not_allow_the_network_refuses_a_step_asking_for_it(
    ctx: Context,
) -> None:
    from workers.sandbox.chunks import LoadFailed, run_sandboxed

    # Accepted by a web app that allowed it; this worker's own settings do not.
    with pytest.raises(LoadFailed) as refused:
        run_sandboxed(ctx, "j", "s", "math:sqrt", [1], lambda s, line: None, network=True)
    assert "JOBSYS_SANDBOX_ALLOW_NETWORK" in refused.value.failure["error"]["message"]
