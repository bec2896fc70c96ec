"""Spec bodies the tests submit: a Docker job of one or two steps and a function map."""

from __future__ import annotations

import cloudpickle

from jobsys.envelope import to_wire
from jobsys.signing import b64encode
from tests.support.services import BUSYBOX_IMAGE


def docker_spec(command: str = "echo hi", **extra: object) -> dict[str, object]:
    step = {
        "kind": "docker",
        "image": BUSYBOX_IMAGE,
        "command": ["sh", "-c", command],
        **extra,
    }
    return {"name": "hello", "steps": [step]}


def two_docker_steps() -> dict[str, object]:
    """A job of two like Docker steps: the second starts once the first has ended."""
    spec = docker_spec()
    step = spec["steps"][0]  # type: ignore[index]
    return {**spec, "steps": [step, dict(step)]}


def function_spec(items: list[object], chunk_size: int = 2, pickled: bool = False) -> dict:
    fn = {"$pickle": b64encode(cloudpickle.dumps(abs))} if pickled else "builtins:abs"
    return {
        "name": "map",
        "steps": [
            {
                "kind": "function",
                "function": fn,
                "items": [to_wire(i) for i in items],
                "chunk_size": chunk_size,
            }
        ],
    }
