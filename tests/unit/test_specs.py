from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from jobsys.config import Settings
from jobsys.errors import SpecError
from jobsys.specs import (
    DockerStep,
    FunctionStep,
    chunk_bounds,
    chunk_size_for,
    docker_step_from_form,
    docker_step_problems,
    mem_bytes,
    parse_job_spec,
)
from tests.support.specs import docker_spec


def fields_of(data: Any, settings: Settings) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        parse_job_spec(data, settings)
    return info.value.fields


def test_docker_step_parses_with_defaults(settings: Settings) -> None:
    spec = parse_job_spec(docker_spec(retries=2, env={"A": "1", "N": 5}), settings)
    step = spec.steps[0]
    assert isinstance(step, DockerStep)
    assert step.command == ("sh", "-c", "echo hi")
    assert step.env == {"A": "1", "N": "5"}
    assert (step.retries, step.timeout_s) == (2, 3600.0)
    assert spec.to_dict()["steps"][0]["command"] == ["sh", "-c", "echo hi"]


def test_command_string_is_split_like_a_shell(settings: Settings) -> None:
    data = {"steps": [{"kind": "docker", "image": "jobsys/x", "command": "sh -c 'echo a b'"}]}
    assert parse_job_spec(data, settings).steps[0].command == ("sh", "-c", "echo a b")


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"kind": "ssh"}, "steps[0].kind", "unknown step kind"),
        ({"command": []}, "steps[0].command", "non-empty list"),
        ({"command": ""}, "steps[0].command", "non-empty list"),
        ({"timeout_s": -1}, "steps[0].timeout_s", "above 0"),
        ({"timeout_s": "10"}, "steps[0].timeout_s", "give a number"),
        ({"retries": 1.5}, "steps[0].retries", "whole number"),
        ({"image": "evil/miner"}, "steps[0].image", "not allowed"),
        ({"privileged": True}, "steps[0].privileged", "JOBSYS_DOCKER_ALLOW_PRIVILEGED"),
        ({"volumes": ["/:/host"]}, "steps[0].volumes", "mounts"),
        ({"env": {"1BAD": "x"}}, "steps[0].env.1BAD", "letters, digits"),
        ({"mem_limit": "lots"}, "steps[0].mem_limit", "256m"),
        ({"colour": "red"}, "steps[0].colour", "unknown field"),
    ],
)
def test_bad_docker_fields_are_named(
    settings: Settings, change: dict[str, Any], field: str, fragment: str
) -> None:
    data = docker_spec()
    data["steps"][0].update(change)  # type: ignore[index]
    errors = fields_of(data, settings)
    assert fragment in errors[field]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ([1, 2], "body"),
        ({"name": "x"}, "steps"),
        ({"steps": []}, "steps"),
        ({"steps": ["docker"]}, "steps[0]"),
        ({"name": "", "steps": [{"kind": "docker"}]}, "name"),
    ],
)
def test_bad_job_shapes(settings: Settings, data: Any, field: str) -> None:
    assert field in fields_of(data, settings)


def test_every_problem_is_reported_at_once(settings: Settings) -> None:
    data = {"steps": [{"kind": "docker", "image": "", "command": [], "timeout_s": 0}]}
    assert set(fields_of(data, settings)) == {
        "steps[0].image",
        "steps[0].command",
        "steps[0].timeout_s",
    }


def test_function_step(settings: Settings) -> None:
    data = {"steps": [{"kind": "function", "function": "math:sqrt", "items": [1, 4]}]}
    step = parse_job_spec(data, settings).steps[0]
    assert isinstance(step, FunctionStep)
    assert step.items == (1, 4)
    bad = {"steps": [{"kind": "function", "function": "not a path", "items": "x"}]}
    assert set(fields_of(bad, settings)) == {"steps[0].function", "steps[0].items"}


def test_item_limit(settings: Settings) -> None:
    small = Settings.from_env(
        {}, data_dir=settings.data_dir, secret_key=settings.secret_key, max_items=3
    )
    data = {"steps": [{"kind": "function", "function": "math:sqrt", "items": [1, 2, 3, 4]}]}
    assert "at most 3 items" in fields_of(data, small)["steps[0].items"]


def test_automatic_chunk_size(settings: Settings) -> None:
    def step(n: int, size: int | None = None) -> FunctionStep:
        return FunctionStep(function="m:f", items=tuple(range(n)), chunk_size=size)

    def count(n: int, slots: int | None = None) -> int:
        return len(chunk_bounds(n, chunk_size_for(step(n), settings, slots)))

    # the fewest chunks of up to 2,500 items, their count a multiple of the slots
    assert chunk_size_for(step(10_000), settings, 2) == 2500
    assert count(10_000, 2) == 4
    assert chunk_size_for(step(10_000), settings, 8) == 1250
    assert count(10_000, 8) == 8
    assert count(10_000, 3) == 6  # 2 rounds of 3, 1,667 items a chunk
    assert count(1000, 2) == 2
    assert count(100_000, 2) == 40
    assert chunk_size_for(step(10_000_000), settings, 2) == settings.max_chunk_size
    assert chunk_size_for(step(1000, 7), settings, 2) == 7
    # no slots given: the setting's (8 here)
    assert count(10_000) == 8
    # never finer than min_chunk_size: a chunk's round trips outweigh two items
    assert chunk_size_for(step(50), settings, 8) == settings.min_chunk_size == 20
    assert count(50, 8) == 3
    assert count(10, 8) == 1  # one chunk of all ten
    assert count(1, 8) == 1
    assert count(0, 8) == 1


def test_chunk_bounds_cover_every_item_once() -> None:
    bounds = chunk_bounds(10, 4)
    assert bounds == [(0, 4), (4, 8), (8, 10)]
    assert chunk_bounds(0, 4) == [(0, 0)]


def test_form_fields_become_a_spec(settings: Settings) -> None:
    form = {
        "name": "f",
        "image": "jobsys/busybox:local",
        "command": "sh -c 'echo hi'",
        "env": "A=1\nB=two words\n",
        "timeout_s": "30",
        "retries": "1",
        "mem_limit": "",
    }
    spec = parse_job_spec(docker_step_from_form(form), settings)
    step = spec.steps[0]
    assert isinstance(step, DockerStep)
    assert step.env == {"A": "1", "B": "two words"}
    assert (step.timeout_s, step.retries, step.mem_limit) == (30.0, 1, None)
    with pytest.raises(SpecError) as info:
        docker_step_from_form({**form, "env": "no equals sign"})
    assert "NAME=value" in info.value.fields["env"]
    bad = docker_step_from_form({**form, "timeout_s": "soon"})
    assert "give a number" in fields_of(bad, settings)["steps[0].timeout_s"]


def test_priority_and_chunk_time_limits(settings: Settings) -> None:
    step = {"kind": "function", "function": "math:sqrt", "items": [1]}
    limited = {**step, "soft_time_limit_s": 2, "time_limit_s": 5}
    spec = parse_job_spec({"name": "p", "priority": 9, "steps": [limited]}, settings)
    assert spec.priority == 9 and spec.to_dict()["priority"] == 9
    fn = spec.steps[0]
    assert isinstance(fn, FunctionStep) and (fn.soft_time_limit_s, fn.time_limit_s) == (2, 5)
    plain = parse_job_spec({"name": "p", "steps": [step]}, settings)
    assert plain.priority == 5 and "priority" not in plain.to_dict()
    assert fields_of({"steps": [step], "priority": 10}, settings) == {
        "priority": "give a whole number from 0 to 9"
    }
    assert "priority" in fields_of({"steps": [step], "priority": "high"}, settings)
    backwards = {**step, "soft_time_limit_s": 5, "time_limit_s": 5}
    assert fields_of({"steps": [backwards]}, settings) == {
        "steps[0].soft_time_limit_s": "make the soft limit shorter than time_limit_s"
    }
    assert "steps[0].time_limit_s" in fields_of({"steps": [{**step, "time_limit_s": 0}]}, settings)


def test_host_access_only_where_the_operator_allows_it(settings: Settings) -> None:
    from dataclasses import replace

    asks = {
        "network": "bridge",
        "privileged": True,
        "mounts": [{"source": "/srv/data/in", "target": "/in"}],
    }
    data = docker_spec(**asks)
    assert set(fields_of(data, settings)) == {
        "steps[0].network",
        "steps[0].privileged",
        "steps[0].mounts",
    }
    allowed = replace(
        settings,
        docker_allow_network=True,
        docker_allow_privileged=True,
        docker_mount_roots=("/srv/data",),
    )
    step = parse_job_spec(data, allowed).steps[0]
    assert isinstance(step, DockerStep)
    assert (step.network, step.privileged) == ("bridge", True)
    assert [(m.source, m.target, m.read_only) for m in step.mounts] == [
        ("/srv/data/in", "/in", True)
    ]
    outside = [
        {"source": "/srv/database", "target": "/x"},  # a sibling whose name starts the same
        {"source": "/srv/data/../../etc", "target": "/x"},
        {"source": "relative", "target": "/x"},
        {"source": "/srv/data", "target": "/x", "read_only": "no"},
    ]
    problems = fields_of(docker_spec(mounts=outside), allowed)
    assert "outside the folders" in problems["steps[0].mounts[0].source"]
    assert "without '..'" in problems["steps[0].mounts[1].source"]
    assert "absolute path" in problems["steps[0].mounts[2].source"]
    assert "true or false" in problems["steps[0].mounts[3].read_only"]


def test_memory_and_cpus_above_the_operators_limits_are_refused_naming_them(
    settings: Settings,
) -> None:
    narrow = replace(settings, docker_max_mem="1g", docker_max_cpus=2.0)
    errors = fields_of(docker_spec(mem_limit="1025m", cpus=2.5), narrow)
    assert "1g" in errors["steps[0].mem_limit"]
    assert "JOBSYS_DOCKER_MAX_MEM" in errors["steps[0].mem_limit"]
    assert "at most 2" in errors["steps[0].cpus"]
    assert "JOBSYS_DOCKER_MAX_CPUS" in errors["steps[0].cpus"]
    step = parse_job_spec(docker_spec(mem_limit="1g", cpus=2), narrow).steps[0]
    assert isinstance(step, DockerStep) and (step.mem_limit, step.cpus) == ("1g", 2.0)


def test_the_default_limits_refuse_what_no_worker_should_grant(settings: Settings) -> None:
    errors = fields_of(docker_spec(mem_limit="64g", cpus=64), settings)
    assert set(errors) == {"steps[0].mem_limit", "steps[0].cpus"}


@pytest.mark.parametrize(
    ("size", "expected"), [("512", 512), ("2k", 2048), ("256m", 256 << 20), ("1G", 1 << 30)]
)
def test_mem_bytes_reads_sizes_as_docker_does(size: str, expected: int) -> None:
    assert mem_bytes(size) == expected


def test_a_worker_checks_the_image_and_limits_with_its_own_settings(settings: Settings) -> None:
    """A step the web app accepted (and stored) is judged again by each worker:
    a narrower image list or lower limits there refuse it."""
    spec = {"image": "jobsys/busybox:local", "command": ["true"], "mem_limit": "2g"}
    assert docker_step_problems(spec, settings) == {}
    narrow = replace(
        settings, docker_images=("jobsys/approved-*",), docker_max_mem="1g", docker_max_cpus=0.5
    )
    problems = docker_step_problems(spec, narrow)
    assert "is not allowed; allowed: jobsys/approved-*" in problems["step.image"]
    assert "JOBSYS_DOCKER_MAX_MEM" in problems["step.mem_limit"]
    # No cpus in the step: the worker's default (1.0) is what the container would get.
    assert "JOBSYS_DOCKER_MAX_CPUS" in problems["step.cpus"]
