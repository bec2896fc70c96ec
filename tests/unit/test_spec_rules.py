"""The rules a submitted spec is held to, at their edges: each refusal names the
field by its path and says how to fix it, the largest value allowed passes and
the next one is refused, and what is accepted is kept as given (or normalised
the way a user would expect)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import pytest

from jobsys.config import Settings
from jobsys.errors import ConfigError, SpecError
from jobsys.specs import (
    DockerStep,
    FunctionStep,
    JobSpec,
    Mount,
    docker_step_from_form,
    docker_step_problems,
    mem_bytes,
    parse_job_spec,
    step_to_dict,
)
from tests.support.specs import docker_spec

FN = {"kind": "function", "function": "math:sqrt", "items": [1]}
RAW = {"kind": "docker", "image": "jobsys/busybox:local", "command": ["true"]}


def fields_of(data: Any, settings: Settings) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        parse_job_spec(data, settings)
    return info.value.fields


def docker(settings: Settings, **fields: Any) -> DockerStep:
    step = parse_job_spec(docker_spec(**fields), settings).steps[0]
    assert isinstance(step, DockerStep)
    return step


def docker_errors(settings: Settings, **fields: Any) -> dict[str, str]:
    return fields_of(docker_spec(**fields), settings)


def function(settings: Settings, **fields: Any) -> FunctionStep:
    step = parse_job_spec({"steps": [{**FN, **fields}]}, settings).steps[0]
    assert isinstance(step, FunctionStep)
    return step


def function_errors(settings: Settings, **fields: Any) -> dict[str, str]:
    return fields_of({"steps": [{**FN, **fields}]}, settings)


# -- the job ------------------------------------------------------------------


def test_the_job_name_is_trimmed_defaulted_and_at_most_200(settings: Settings) -> None:
    assert parse_job_spec({"name": "  nightly  ", "steps": [FN]}, settings).name == "nightly"
    assert parse_job_spec({"steps": [FN]}, settings).name == "job"
    assert parse_job_spec({"name": "n" * 200, "steps": [FN]}, settings).name == "n" * 200
    for bad in ("n" * 201, "   ", 7):
        assert fields_of({"name": bad, "steps": [FN]}, settings) == {
            "name": "give a non-empty name of at most 200 characters"
        }


def test_a_body_that_is_not_an_object_is_refused_as_the_body(settings: Settings) -> None:
    for body in ([FN], "steps", None):
        assert fields_of(body, settings) == {"body": "send a JSON object with 'name' and 'steps'"}


def test_a_job_has_one_to_50_steps(settings: Settings) -> None:
    assert len(parse_job_spec({"steps": [FN] * 50}, settings).steps) == 50
    assert fields_of({"steps": [FN] * 51}, settings) == {"steps": "a job has at most 50 steps"}
    for steps in ([], None, FN):
        assert fields_of({"steps": steps}, settings) == {"steps": "give a non-empty list of steps"}


def test_unknown_job_fields_are_named_with_the_allowed_ones(settings: Settings) -> None:
    assert fields_of({"steps": [FN], "owner": "root"}, settings) == {
        "owner": "unknown field; allowed: delay_s, name, not_before, priority, project, steps, tags"
    }


def test_a_step_that_is_not_an_object_or_of_no_known_kind(settings: Settings) -> None:
    assert fields_of({"steps": [FN, "docker"]}, settings) == {
        "steps[1]": "each step must be an object with a 'kind'"
    }
    assert fields_of({"steps": [{"image": "jobsys/x"}]}, settings) == {
        "steps[0].kind": "unknown step kind None: use 'docker' or 'function'"
    }


def test_every_step_is_checked_not_just_the_first(settings: Settings) -> None:
    bad = {**FN, "items": "x"}
    assert set(fields_of({"steps": [FN, bad, bad]}, settings)) == {
        "steps[1].items",
        "steps[2].items",
    }


def test_priority_from_0_to_9(settings: Settings) -> None:
    for ok in (0, 9):
        assert parse_job_spec({"steps": [FN], "priority": ok}, settings).priority == ok
    for bad in (-1, 10):
        assert fields_of({"steps": [FN], "priority": bad}, settings) == {
            "priority": "give a whole number from 0 to 9"
        }
    for bad in (True, 5.0, "5"):
        assert fields_of({"steps": [FN], "priority": bad}, settings) == {
            "priority": "give a whole number"
        }


def test_tags_keep_their_order_once_each(settings: Settings) -> None:
    spec = parse_job_spec({"steps": [FN], "tags": ["b", "team=data", "b", "a"]}, settings)
    assert spec.tags == ("b", "team=data", "a")
    assert spec.to_dict()["tags"] == ["b", "team=data", "a"]
    assert "tags" not in parse_job_spec({"steps": [FN]}, settings).to_dict()


def test_tags_from_a_form_are_comma_separated(settings: Settings) -> None:
    spec = parse_job_spec({"steps": [FN], "tags": " nightly, ,team=data ,"}, settings)
    assert spec.tags == ("nightly", "team=data")


def test_a_bad_tag_is_named_and_the_rule_given(settings: Settings) -> None:
    longest = "t" * 64
    assert parse_job_spec({"steps": [FN], "tags": [longest]}, settings).tags == (longest,)
    for bad in ("t" * 65, "-lead", "sp ace"):
        assert fields_of({"steps": [FN], "tags": ["ok", bad]}, settings) == {
            "tags": f"{bad!r} is not a tag: start with a letter or digit, then letters, "
            "digits and _ . : = / - (at most 64 characters)"
        }
    for bad in ({"a": 1}, ["a", 1], 3):
        assert fields_of({"steps": [FN], "tags": bad}, settings) == {
            "tags": 'give a list of tags such as ["nightly", "team=data"]'
        }


def test_a_job_has_at_most_20_tags(settings: Settings) -> None:
    twenty = [f"t{i}" for i in range(20)]
    assert len(parse_job_spec({"steps": [FN], "tags": twenty}, settings).tags) == 20
    # repeats count once
    assert len(parse_job_spec({"steps": [FN], "tags": [*twenty, "t0"]}, settings).tags) == 20
    assert fields_of({"steps": [FN], "tags": [*twenty, "t20"]}, settings) == {
        "tags": "a job has at most 20 tags"
    }


def test_to_dict_round_trips_through_json_and_the_parser(settings: Settings) -> None:
    spec = parse_job_spec(
        {
            "name": "n",
            "priority": 2,
            "tags": ["x"],
            "steps": [{**RAW, "env": {"A": 1}, "command": "echo 'a b'"}, FN],
        },
        settings,
    )
    data = spec.to_dict()
    assert data["steps"][0]["command"] == ["echo", "a b"]
    assert data["steps"][0]["env"] == {"A": "1"}
    assert data["steps"][1]["items"] == [1]
    # as the store keeps it: JSON
    assert parse_job_spec(json.loads(json.dumps(data)), settings) == spec
    assert isinstance(spec, JobSpec)


def test_step_to_dict_gives_plain_lists_and_dicts() -> None:
    step = DockerStep(image="i", command=("a", "b"), env={"K": "v"})
    data = step_to_dict(step)
    assert (data["command"], data["env"], data["kind"]) == (["a", "b"], {"K": "v"}, "docker")
    assert type(data["command"]) is list and type(data["env"]) is dict
    fn = step_to_dict(FunctionStep(function="m:f", items=(1, 2)))
    assert fn["items"] == [1, 2] and type(fn["items"]) is list


# -- Docker steps -------------------------------------------------------------


def test_docker_defaults_a_user_relies_on(settings: Settings) -> None:
    step = docker(settings)
    assert (step.timeout_s, step.retries, step.retry_backoff_s, step.stop_grace_s) == (
        3600.0,
        0,
        1.0,
        10.0,
    )
    assert (step.mem_limit, step.cpus, step.network, step.mounts, step.privileged) == (
        None,
        None,
        "none",
        (),
        False,
    )
    assert step.name == "" and step.env == {}


@pytest.mark.parametrize(
    ("field", "low", "high", "message"),
    [
        ("retries", 0, 10, "give a whole number from 0 to 10"),
        ("retry_backoff_s", 0, 3600, "give a number at least 0 and at most 3600"),
        ("stop_grace_s", 0, 600, "give a number at least 0 and at most 600"),
    ],
)
def test_docker_number_fields_at_their_edges(
    settings: Settings, field: str, low: int, high: int, message: str
) -> None:
    for ok in (low, high):
        assert getattr(docker(settings, **{field: ok}), field) == ok
    for bad in (low - 1, high + 1):
        assert docker_errors(settings, **{field: bad}) == {f"steps[0].{field}": message}


def test_a_fraction_of_a_second_is_a_timeout_and_zero_is_not(settings: Settings) -> None:
    assert docker(settings, timeout_s=0.5).timeout_s == 0.5
    most = settings.docker_max_timeout_s
    assert docker(settings, timeout_s=most).timeout_s == most
    for bad in (0, most + 1):
        assert docker_errors(settings, timeout_s=bad) == {
            "steps[0].timeout_s": f"give a number above 0 and at most {most:g}"
        }


@pytest.mark.parametrize("bad", [True, "10", None, math.inf, math.nan])
def test_a_number_field_wants_a_finite_number(settings: Settings, bad: Any) -> None:
    assert docker_errors(settings, timeout_s=bad) == {"steps[0].timeout_s": "give a number"}
    assert docker_errors(settings, stop_grace_s=bad) == {"steps[0].stop_grace_s": "give a number"}


def test_forbidden_docker_fields_say_what_to_use_instead(settings: Settings) -> None:
    errors = docker_errors(settings, network_mode="host", cap_add=["SYS_ADMIN"], pid_mode="host")
    assert errors == {
        "steps[0].network_mode": (
            "give 'network' ('none' or 'bridge', which the operator must allow)"
        ),
        "steps[0].cap_add": "extra capabilities are not allowed in Docker steps",
        "steps[0].pid_mode": "Docker steps cannot share the host's namespaces",
    }


def test_an_unknown_docker_field_lists_what_is_allowed(settings: Settings) -> None:
    message = docker_errors(settings, colour="red")["steps[0].colour"]
    assert message.startswith("unknown field; allowed: cap_add, command, cpus, devices, env,")
    for name in ("image", "mounts", "network", "privileged", "stop_grace_s", "timeout_s"):
        assert name in message.split("allowed: ")[1].split(", ")


def test_image_references_docker_accepts(settings: Settings) -> None:
    wide = replace(settings, docker_images=("*",))
    for ref in (
        "busybox",
        "jobsys/busybox:local",
        "registry.example.com:5000/team/app:1.2",
        "localhost/app",
        "host:5000/app",
        "app@sha256:" + "a" * 64,
    ):
        assert docker(wide, image=ref).image == ref
    for ref in ("", "UPPER/case", "a/" + "b" * 511, "app:", "-lead", 7):
        assert docker_errors(wide, image=ref) == {
            "steps[0].image": "give an image reference such as 'jobsys/busybox:local' "
            "(lower-case name, optional :tag or @sha256:digest)"
        }


def test_an_image_outside_the_allow_list_names_the_list(settings: Settings) -> None:
    narrow = replace(settings, docker_images=("jobsys/*", "busybox*"))
    assert docker_errors(narrow, image="evil/miner") == {
        "steps[0].image": "image 'evil/miner' is not allowed; allowed: jobsys/*, busybox*"
    }
    # matching is case-sensitive and whole: a pattern is not a prefix
    assert "steps[0].image" in docker_errors(
        replace(settings, docker_images=("jobsys",)), image="jobsys/x"
    )


def test_command_rules(settings: Settings) -> None:
    def command(value: Any) -> tuple[str, ...]:
        step = parse_job_spec({"steps": [{**RAW, "command": value}]}, settings).steps[0]
        assert isinstance(step, DockerStep)
        return step.command

    def errors(value: Any) -> dict[str, str]:
        return fields_of({"steps": [{**RAW, "command": value}]}, settings)

    assert command("echo 'a b'") == ("echo", "a b")
    assert command(["echo", ""]) == ("echo", "")
    assert errors("echo 'unterminated")["steps[0].command"].startswith(
        "cannot split the command line: "
    )
    for bad in ([], [1], "", "   ", ["sh", 2], {"sh": 1}, None):
        assert errors(bad) == {
            "steps[0].command": 'give a non-empty list of strings, e.g. ["sh", "-c", "echo hi"]'
        }
    assert errors([" ", "x"]) == {
        "steps[0].command": "the first word of the command must not be empty"
    }


def test_env_rules(settings: Settings) -> None:
    assert docker(settings, env={"_A1": 1.5, "B": "x"}).env == {"_A1": "1.5", "B": "x"}
    assert docker_errors(settings, env=["A=1"]) == {
        "steps[0].env": 'give an object of NAME: "value" pairs'
    }
    assert docker_errors(settings, env={"A-B": "x", "OK": True, "N": None}) == {
        "steps[0].env.A-B": "names are letters, digits and _, not starting with a digit",
        "steps[0].env.OK": 'values are strings (or numbers), or {"secret": "NAME"}',
        "steps[0].env.N": 'values are strings (or numbers), or {"secret": "NAME"}',
    }
    assert docker(settings, env={"T": {"secret": "stripe"}}).env == {"T": {"secret": "stripe"}}


def test_step_names(settings: Settings) -> None:
    assert docker(settings, name="build").name == "build"
    assert docker(settings, name="n" * 200).name == "n" * 200
    for bad in ("n" * 201, 5):
        assert docker_errors(settings, name=bad) == {
            "steps[0].name": "give a name of at most 200 characters"
        }
    assert function(settings, name="map").name == "map"
    assert function_errors(settings, name=5) == {
        "steps[0].name": "give a name of at most 200 characters"
    }


def test_memory_limits(settings: Settings) -> None:
    narrow = replace(settings, docker_max_mem="1g")
    assert docker(narrow, mem_limit="1g").mem_limit == "1g"
    assert docker(narrow, mem_limit="1024M").mem_limit == "1024M"
    assert docker_errors(narrow, mem_limit="1073741825") == {
        "steps[0].mem_limit": "1073741825 is more than the 1g the operator allows a step "
        "(JOBSYS_DOCKER_MAX_MEM); ask for less"
    }
    for bad in ("0", "1t", "256 m", 256, "m"):
        assert docker_errors(narrow, mem_limit=bad) == {
            "steps[0].mem_limit": "give a size such as '256m' or '1g'"
        }


def test_an_operators_unreadable_memory_limit_is_a_config_error(settings: Settings) -> None:
    broken = replace(settings, docker_max_mem="lots")
    with pytest.raises(ConfigError, match=r"JOBSYS_DOCKER_MAX_MEM='lots' is not a size"):
        parse_job_spec(docker_spec(mem_limit="1m"), broken)
    assert docker(broken).mem_limit is None  # only read when a step asks for memory


def test_mem_bytes_refuses_what_is_not_a_size() -> None:
    assert mem_bytes("7") == 7 and mem_bytes("3b") == 3 and mem_bytes("2g") == 2 << 30
    for bad in ("", "0", "1.5g", "g", "1kb"):
        with pytest.raises(ValueError, match="is not a size such as '256m' or '1g'"):
            mem_bytes(bad)


def test_cpus(settings: Settings) -> None:
    narrow = replace(settings, docker_max_cpus=2.0)
    assert docker(narrow, cpus=0.25).cpus == 0.25
    assert docker(narrow, cpus=2).cpus == 2.0 and isinstance(docker(narrow, cpus=2).cpus, float)
    for bad in (0, -1, 2.01):
        assert docker_errors(narrow, cpus=bad) == {
            "steps[0].cpus": "give a number above 0 and at most 2, the most the operator "
            "allows a step (JOBSYS_DOCKER_MAX_CPUS)"
        }
    for bad in (True, "1", math.inf):
        assert docker_errors(narrow, cpus=bad) == {"steps[0].cpus": "give a number"}


# -- host access --------------------------------------------------------------


def test_network_rules(settings: Settings) -> None:
    assert docker(settings, network="none").network == "none"
    assert docker_errors(settings, network="host") == {
        "steps[0].network": "use 'none' (the default) or 'bridge'"
    }
    assert docker_errors(settings, network="bridge") == {
        "steps[0].network": "Docker steps run without a network; the operator can allow "
        "one with JOBSYS_DOCKER_ALLOW_NETWORK=true"
    }
    allowed = replace(settings, docker_allow_network=True)
    assert docker(allowed, network="bridge").network == "bridge"
    assert "steps[0].network" in docker_errors(allowed, network="host")


def test_privileged_rules(settings: Settings) -> None:
    assert docker(settings, privileged=False).privileged is False
    assert docker_errors(settings, privileged="yes") == {"steps[0].privileged": "use true or false"}
    assert docker_errors(settings, privileged=True) == {
        "steps[0].privileged": "jobsys runs no privileged containers unless the operator sets "
        "JOBSYS_DOCKER_ALLOW_PRIVILEGED=true"
    }
    allowed = replace(settings, docker_allow_privileged=True)
    assert docker(allowed, privileged=True).privileged is True
    assert "steps[0].privileged" in docker_errors(allowed, privileged=1)


def test_mounts_are_refused_unless_the_operator_gave_roots(settings: Settings) -> None:
    assert docker(settings, mounts=[]).mounts == ()
    assert docker(settings, mounts=None).mounts == ()
    assert docker_errors(settings, mounts=[{"source": "/srv/data", "target": "/d"}]) == {
        "steps[0].mounts": "host mounts are not allowed; the operator can allow folders "
        "with JOBSYS_DOCKER_MOUNT_ROOTS=/srv/data,..."
    }


def test_mounts_below_the_roots_normalised(settings: Settings) -> None:
    roots = replace(settings, docker_mount_roots=("/srv/data/", "/scratch"))
    step = docker(
        roots,
        mounts=[
            {"source": "/srv/data", "target": "/in/"},
            {"source": "/srv/data//sub/./x", "target": "/out", "read_only": False},
            {"source": "/scratch/t", "target": "/t", "read_only": True},
        ],
    )
    assert step.mounts == (
        Mount("/srv/data", "/in", True),
        Mount("/srv/data/sub/x", "/out", False),
        Mount("/scratch/t", "/t", True),
    )


def test_bad_mounts_are_named_by_index_and_field(settings: Settings) -> None:
    roots = replace(settings, docker_mount_roots=("/srv/data",))
    errors = docker_errors(
        roots,
        mounts=[
            {"source": "/srv/data/a", "target": "/a"},
            {"source": "/srv/data/a", "target": "relative"},
            {"source": "/srv/data/a", "target": "/a/../etc"},
            {"source": "/srv/data/a", "target": "/a", "mode": "rw"},
            "/srv/data:/d",
            {"source": 5, "target": "/a"},
            {"source": "/srv", "target": "/a"},
        ],
    )
    assert errors == {
        "steps[0].mounts[1].target": "give an absolute path without '..'",
        "steps[0].mounts[2].target": "give an absolute path without '..'",
        "steps[0].mounts[3]": "give {source, target, read_only}",
        "steps[0].mounts[4]": "give {source, target, read_only}",
        "steps[0].mounts[5].source": "give an absolute path without '..'",
        "steps[0].mounts[6].source": "'/srv' is outside the folders the operator allows: /srv/data",
    }


def test_at_most_20_mounts_in_a_list(settings: Settings) -> None:
    roots = replace(settings, docker_mount_roots=("/srv/data",))
    one = {"source": "/srv/data", "target": "/d"}
    assert len(docker(roots, mounts=[one] * 20).mounts) == 20
    message = "give a list (at most 20) of {source, target, read_only}"
    assert docker_errors(roots, mounts=[one] * 21) == {"steps[0].mounts": message}
    assert docker_errors(roots, mounts=one) == {"steps[0].mounts": message}


# -- what a worker checks again -----------------------------------------------


def test_a_worker_judges_a_stored_step_by_its_own_defaults(settings: Settings) -> None:
    spec = {"image": "jobsys/busybox:local", "command": ["true"]}
    lean = replace(settings, docker_default_mem_limit="2g", docker_max_mem="1g")
    assert set(docker_step_problems(spec, lean)) == {"step.mem_limit"}
    # the step's own limit wins over the worker's default
    assert docker_step_problems({**spec, "mem_limit": "512m"}, lean) == {}
    few = replace(settings, docker_default_cpus=4.0, docker_max_cpus=2.0)
    assert set(docker_step_problems(spec, few)) == {"step.cpus"}
    assert docker_step_problems({**spec, "cpus": 1}, few) == {}


def test_a_worker_refuses_host_access_its_operator_did_not_allow(settings: Settings) -> None:
    spec = {
        "image": "jobsys/busybox:local",
        "network": "bridge",
        "privileged": True,
        "mounts": [{"source": "/srv/data", "target": "/d"}],
    }
    assert set(docker_step_problems(spec, settings)) == {
        "step.network",
        "step.privileged",
        "step.mounts",
    }
    assert "step.image" in docker_step_problems({"image": "evil/miner"}, settings)


# -- function steps -----------------------------------------------------------


def test_function_step_defaults(settings: Settings) -> None:
    step = function(settings)
    assert (step.function, step.items, step.chunk_size, step.tolerate_failures) == (
        "math:sqrt",
        (1,),
        None,
        False,
    )
    assert (step.soft_time_limit_s, step.time_limit_s, step.name) == (None, None, "")


def test_function_references(settings: Settings) -> None:
    for ref in ("pkg.mod:fn", "_m:Cls.method"):
        assert function(settings, function=ref).function == ref
    pickled = {"$pickle": "gASV"}
    assert function(settings, function=pickled).function == pickled
    message = "give an import path 'package.module:function' or {'$pickle': <base64 cloudpickle>}"
    for bad in ("pkg.mod", "pkg:fn()", ":fn", 5, None):
        assert function_errors(settings, function=bad) == {"steps[0].function": message}
    for bad in ({"$pickle": ""}, {"$pickle": 5}):
        assert function_errors(settings, function=bad) == {
            "steps[0].function": "$pickle must be a base64 string"
        }


def test_items_up_to_the_operators_limit(settings: Settings) -> None:
    small = replace(settings, max_items=3)
    assert function(small, items=[1, 2, 3]).items == (1, 2, 3)
    assert function(small, items=[]).items == ()
    assert function_errors(small, items=[1, 2, 3, 4]) == {
        "steps[0].items": "at most 3 items per step (got 4)"
    }
    assert function_errors(small, items=(1,)) == {
        "steps[0].items": "give a list of items to map the function over"
    }


def test_chunk_size_and_tolerate_failures(settings: Settings) -> None:
    assert function(settings, chunk_size=1).chunk_size == 1
    assert function(settings, chunk_size=1_000_000).chunk_size == 1_000_000
    for bad in (0, 1_000_001):
        assert function_errors(settings, chunk_size=bad) == {
            "steps[0].chunk_size": "give a whole number from 1 to 1000000"
        }
    assert function(settings, tolerate_failures=True).tolerate_failures is True
    assert function_errors(settings, tolerate_failures="yes") == {
        "steps[0].tolerate_failures": "use true or false"
    }


def test_chunk_time_limits(settings: Settings) -> None:
    step = function(settings, soft_time_limit_s=1.5)
    assert (step.soft_time_limit_s, step.time_limit_s) == (1.5, None)
    step = function(settings, time_limit_s=3)
    assert (step.soft_time_limit_s, step.time_limit_s) == (None, 3.0)
    step = function(settings, soft_time_limit_s=None, time_limit_s=None)
    assert (step.soft_time_limit_s, step.time_limit_s) == (None, None)
    most = settings.docker_max_timeout_s
    assert function_errors(settings, soft_time_limit_s=0) == {
        "steps[0].soft_time_limit_s": f"give a number above 0 and at most {most:g}"
    }
    assert function_errors(settings, time_limit_s=most + 1) == {
        "steps[0].time_limit_s": f"give a number above 0 and at most {most:g}"
    }
    assert function_errors(settings, soft_time_limit_s=6, time_limit_s=5) == {
        "steps[0].soft_time_limit_s": "make the soft limit shorter than time_limit_s"
    }


def test_unknown_function_fields(settings: Settings) -> None:
    assert function_errors(settings, image="jobsys/x") == {
        "steps[0].image": "unknown field; allowed: chunk_size, function, items, kind, "
        "memory_limit, name, network, secrets, soft_time_limit_s, time_limit_s, tolerate_failures"
    }


# -- the submit form ----------------------------------------------------------


def test_form_numbers_and_defaults() -> None:
    data = docker_step_from_form(
        {
            "image": " jobsys/x ",
            "command": "echo",
            "timeout_s": " 2.5 ",
            "retries": "3",
            "cpus": "1",
            "mem_limit": " 64m ",
            "tags": "a,b",
        }
    )
    step = data["steps"][0]
    assert data["name"] == "job" and data["tags"] == "a,b"
    assert step["image"] == "jobsys/x"
    assert (step["timeout_s"], step["retries"], step["cpus"], step["mem_limit"]) == (
        2.5,
        3,
        1,
        "64m",
    )
    assert type(step["retries"]) is int and type(step["timeout_s"]) is float
    empty = docker_step_from_form({})
    assert empty == {
        "name": "job",
        "steps": [{"kind": "docker", "image": "", "command": "", "env": {}}],
        "tags": "",
    }
    assert docker_step_from_form({"name": "  ", "retries": "lots"})["steps"][0]["retries"] == "lots"


def test_form_env_lines(settings: Settings) -> None:
    data = docker_step_from_form({"env": "\n A = x=y \n\n B=\n"})
    assert data["steps"][0]["env"] == {"A": " x=y ", "B": ""}
    with pytest.raises(SpecError) as info:
        docker_step_from_form({"env": "A=1\n\nno equals"})
    assert info.value.fields == {"env": "line 3: write NAME=value, one per line"}


def test_an_image_reference_of_512_characters_is_the_longest(settings: Settings) -> None:
    wide = replace(settings, docker_images=("*",))
    longest = "a/" + "b" * 510
    assert docker(wide, image=longest).image == longest
    assert "steps[0].image" in docker_errors(wide, image=longest + "b")


def test_a_bad_read_only_flag_is_named(settings: Settings) -> None:
    roots = replace(settings, docker_mount_roots=("/srv/data",))
    assert docker_errors(
        roots, mounts=[{"source": "/srv/data", "target": "/d", "read_only": 0}]
    ) == {"steps[0].mounts[0].read_only": "use true or false"}


def test_a_sibling_of_a_root_is_outside_it(settings: Settings) -> None:
    """Prefixes are compared folder by folder: /exports/BO is not below /exports/BOX."""
    roots = replace(settings, docker_mount_roots=("/exports/BOX",))
    assert docker(roots, mounts=[{"source": "/exports/BOX/in", "target": "/d"}]).mounts
    assert docker_errors(roots, mounts=[{"source": "/exports/BO/in", "target": "/d"}]) == {
        "steps[0].mounts[0].source": (
            "'/exports/BO/in' is outside the folders the operator allows: /exports/BOX"
        )
    }


def test_the_forms_job_name_is_trimmed(settings: Settings) -> None:
    data = docker_step_from_form({"name": " nightly ", "image": "jobsys/x", "command": "true"})
    assert data["name"] == "nightly"
    assert parse_job_spec(data, settings).name == "nightly"


def test_a_bare_byte_count_from_the_form_stays_a_size(settings: Settings) -> None:
    """The form's memory limit is text even when it is all digits ("268435456"
    bytes): made a number, the parser would refuse it as not a size."""
    step = docker_step_from_form({"image": "jobsys/x", "mem_limit": "268435456"})["steps"][0]
    assert step["mem_limit"] == "268435456"
    parsed = parse_job_spec({"name": "j", "steps": [{**step, "command": ["true"]}]}, settings)
    assert parsed.steps[0].mem_limit == "268435456"


def test_a_root_of_slash_allows_every_folder(settings: Settings) -> None:
    everything = replace(settings, docker_mount_roots=("/",))
    (mount,) = docker(everything, mounts=[{"source": "/var/lib/x", "target": "/x"}]).mounts
    assert mount.source == "/var/lib/x"


def test_a_mount_outside_every_root_lists_them_all(settings: Settings) -> None:
    roots = replace(settings, docker_mount_roots=("/srv/data", "/scratch"))
    assert docker_errors(roots, mounts=[{"source": "/etc", "target": "/e"}]) == {
        "steps[0].mounts[0].source": "'/etc' is outside the folders the operator allows: "
        "/srv/data, /scratch"
    }


def test_a_function_steps_sandbox_memory_and_network(settings: Settings) -> None:
    assert function(settings, memory_limit="512m").memory_limit == "512m"
    assert function(settings).memory_limit is None and not function(settings).network
    assert function_errors(settings, memory_limit="5g") == {
        "steps[0].memory_limit": "5g is more than the 4g the operator allows a step "
        "(JOBSYS_SANDBOX_MAX_MEM); ask for less"
    }
    assert function_errors(settings, memory_limit=512) == {
        "steps[0].memory_limit": "give a size such as '256m' or '1g'"
    }
    assert function_errors(settings, network=True) == {
        "steps[0].network": "the operator does not let function steps use the network "
        "(JOBSYS_SANDBOX_ALLOW_NETWORK); leave it out"
    }
    assert function_errors(settings, network="yes") == {"steps[0].network": "use true or false"}
    allowed = replace(settings, sandbox_allow_network=True)
    assert function(allowed, network=True).network
    # Left at their defaults, they are not in the stored step (older specs read the same).
    stored = parse_job_spec({"steps": [FN]}, settings).to_dict()["steps"][0]
    assert not {"memory_limit", "network", "secrets"} & set(stored)
