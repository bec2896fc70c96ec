"""Parse and validate job specs from JSON, forms, the CLI and the client.

One parser for every door: handlers turn their input into a plain dict and
call ``parse_job_spec``. Errors name the field by its path
(``steps[0].timeout_s``) and say how to fix it. Pure: no I/O.
"""

from __future__ import annotations

import fnmatch
import math
import posixpath
import re
import shlex
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from jobsys.config import Settings
from jobsys.envelope import PICKLE_KEY, is_pickled
from jobsys.errors import ConfigError, SpecError

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MEM_LIMIT = re.compile(r"^[1-9][0-9]{0,15}[bkmg]?$", re.IGNORECASE)
#: A Docker image reference: [host[:port]/]path[:tag][@digest], the path in lower case.
_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REF = re.compile(
    # A registry host has a dot or a port, or is localhost (as Docker tells them apart).
    r"(?:(?:localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)(?::[0-9]+)?/|[A-Za-z0-9-]+:[0-9]+/)?"
    rf"{_PATH}(?:/{_PATH})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,})?"
)
IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
#: A secret's name; a function step sees it as an environment variable of that name.
SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
#: Environment names a secret may not take: jobsys's own, and those the sandbox sets.
RESERVED_ENV = frozenset({"PATH", "HOME", "TMPDIR", "LANG", "PYTHONUNBUFFERED"})

#: Fields people try to set that jobsys refuses on purpose, with the reason.
FORBIDDEN_DOCKER_FIELDS = {
    "volumes": "give host folders as 'mounts' (which the operator must allow)",
    "network_mode": "give 'network' ('none' or 'bridge', which the operator must allow)",
    "cap_add": "extra capabilities are not allowed in Docker steps",
    "devices": "host devices are not available to Docker steps",
    "pid_mode": "Docker steps cannot share the host's namespaces",
    "ipc_mode": "Docker steps cannot share the host's namespaces",
    "userns_mode": "Docker steps cannot share the host's namespaces",
    "security_opt": "Docker steps run with jobsys's own security options",
}


@dataclass(frozen=True)
class Mount:
    """A host folder bind-mounted into a Docker step's container."""

    source: str
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class DockerStep:
    image: str
    command: tuple[str, ...]
    #: Each value is text, or ``{"secret": NAME}``: the worker puts in the
    #: secret's value when it starts the container (it is never stored here).
    env: Mapping[str, str | dict[str, str]] = field(default_factory=dict)
    timeout_s: float = 3600.0
    retries: int = 0
    retry_backoff_s: float = 1.0
    #: Seconds between SIGTERM and SIGKILL when the step is cancelled.
    stop_grace_s: float = 10.0
    mem_limit: str | None = None
    cpus: float | None = None
    name: str = ""
    #: Host access, each refused unless the operator allowed it (see ``host_access``).
    network: str = "none"
    mounts: tuple[Mount, ...] = ()
    privileged: bool = False
    kind: Literal["docker"] = "docker"


@dataclass(frozen=True)
class FunctionStep:
    #: ``"package.module:attr"`` or ``{"$pickle": ...}`` (raw from callers, signed once stored).
    function: Any
    items: tuple[Any, ...]
    chunk_size: int | None = None
    tolerate_failures: bool = False
    name: str = ""
    #: Per chunk: past the soft limit the running item fails with SoftTimeLimitExceeded
    #: and the chunk's remaining items are marked not run; past the hard one the
    #: worker process running it is killed and the chunk fails.
    soft_time_limit_s: float | None = None
    time_limit_s: float | None = None
    #: Names of secrets the code sees as environment variables (and ``jobsys.secret``).
    secrets: tuple[str, ...] = ()
    #: The memory each chunk's sandboxed process may take; default ``JOBSYS_SANDBOX_MEM``.
    memory_limit: str | None = None
    #: The sandbox's network: off unless asked for and the operator allows it
    #: (``JOBSYS_SANDBOX_ALLOW_NETWORK``).
    network: bool = False
    kind: Literal["function"] = "function"


StepSpec = DockerStep | FunctionStep


DEFAULT_PRIORITY = 5


@dataclass(frozen=True)
class JobSpec:
    name: str
    steps: tuple[StepSpec, ...]
    #: Free labels (``nightly``, ``team=data``) to find jobs by in the list and API.
    tags: tuple[str, ...] = ()
    #: 0 (lowest) to 9 (most urgent): waiting tasks of a more urgent job go first.
    priority: int = DEFAULT_PRIORITY
    #: Not to start before this moment (UTC); None: at once. Kept on the job, not
    #: in its spec: a rerun starts at once.
    not_before: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "steps": [step_to_dict(s) for s in self.steps]}
        if self.tags:
            data["tags"] = list(self.tags)
        if self.priority != DEFAULT_PRIORITY:
            data["priority"] = self.priority
        return data


def step_to_dict(step: StepSpec) -> dict[str, Any]:
    data = asdict(step)
    if isinstance(step, DockerStep):
        data["command"] = list(step.command)
        data["env"] = dict(step.env)
    else:
        data["items"] = list(step.items)
        data["secrets"] = list(step.secrets)
        # Fields at their default are left out, so specs stored before them read back the same.
        for key, default in (("secrets", []), ("memory_limit", None), ("network", False)):
            if data[key] == default:
                del data[key]
    return data


def secret_refs(spec: JobSpec) -> list[tuple[str, str]]:
    """Each secret the spec names, as ``(field path, secret name)``."""
    found: list[tuple[str, str]] = []
    for i, step in enumerate(spec.steps):
        if isinstance(step, DockerStep):
            for key, value in step.env.items():
                if isinstance(value, Mapping):
                    found.append((f"steps[{i}].env.{key}", value["secret"]))
        else:
            found += [(f"steps[{i}].secrets", name) for name in step.secrets]
    return found


def check_secret_name(name: Any) -> str | None:
    """Why ``name`` cannot name a secret, or None."""
    if not isinstance(name, str) or not SECRET_NAME.match(name):
        return "a secret's name is 1 to 64 letters, digits and _, not starting with a digit"
    if name.upper().startswith("JOBSYS_") or name in RESERVED_ENV:
        return f"{name!r} is a name jobsys uses itself; pick another"
    return None


class _Fields:
    """Collects field errors so one 400 names every problem, not just the first."""

    def __init__(self) -> None:
        self.errors: dict[str, str] = {}

    def add(self, path: str, message: str) -> None:
        self.errors.setdefault(path, message)

    def raise_if_any(self) -> None:
        if self.errors:
            raise SpecError(self.errors)


def parse_job_spec(data: Any, settings: Settings) -> JobSpec:
    errors = _Fields()
    if not isinstance(data, Mapping):
        raise SpecError({"body": "send a JSON object with 'name' and 'steps'"})
    # "project" says where the job goes; the service checks it (jobsys.service.projects).
    known = {"name", "steps", "tags", "priority", "project", "not_before", "delay_s"}
    _unknown(data, known, "", errors)
    name = data.get("name", "job")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        errors.add("name", "give a non-empty name of at most 200 characters")
        name = "job"
    raw_steps = data.get("steps")
    steps: list[StepSpec] = []
    if not isinstance(raw_steps, list) or not raw_steps:
        errors.add("steps", "give a non-empty list of steps")
    elif len(raw_steps) > 50:
        errors.add("steps", "a job has at most 50 steps")
    else:
        for i, raw in enumerate(raw_steps):
            step = _parse_step(raw, f"steps[{i}]", settings, errors)
            if step is not None:
                steps.append(step)
    tags = parse_tags(data.get("tags", []), errors)
    priority = _integer(data.get("priority", DEFAULT_PRIORITY), "priority", errors, low=0, high=9)
    not_before = parse_start(data, errors)
    errors.raise_if_any()
    return JobSpec(
        name=name.strip(), steps=tuple(steps), tags=tags, priority=priority, not_before=not_before
    )


#: The furthest ahead a job may be told to start.
MAX_START_AHEAD = timedelta(days=366)


def parse_start(data: Mapping[str, Any], errors: _Fields) -> datetime | None:
    """When a job may start: ``not_before`` (an ISO time with its zone) or
    ``delay_s`` from now; None for at once (a time in the past is now)."""
    now = datetime.now(UTC)
    if "not_before" in data and "delay_s" in data:
        errors.add("delay_s", "give not_before or delay_s, not both")
        return None
    if "delay_s" in data:
        limit = MAX_START_AHEAD.total_seconds()
        delay = _number(data["delay_s"], "delay_s", errors, low=0, high=limit)
        return now + timedelta(seconds=delay) if delay > 0 else None
    raw = data.get("not_before")
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        errors.add(
            "not_before",
            "give a time with its zone, such as 2026-12-02T03:00:00Z or +01:00, not "
            f"{str(raw)[:40]!r}",
        )
        return None
    if moment - now > MAX_START_AHEAD:
        errors.add("not_before", "give a time at most a year ahead")
        return None
    return moment.astimezone(UTC) if moment > now else None


#: The project that holds everything made before projects existed, and what
#: a caller with no other project works in.
DEFAULT_PROJECT = "default"
#: Project names: lower-case, as they appear in folders (``jobs/<project>/``) and URLs.
PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\Z")  # \Z: "$" lets a newline end it
TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:=/-]{0,63}$")
MAX_TAGS = 20


def parse_tags(raw: Any, errors: _Fields) -> tuple[str, ...]:
    """A job's tags: a list (or comma-separated text, as forms send it) of short
    labels, kept in the given order without repeats."""
    if isinstance(raw, str):
        raw = [t.strip() for t in raw.split(",") if t.strip()]
    if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
        errors.add("tags", 'give a list of tags such as ["nightly", "team=data"]')
        return ()
    bad = [t for t in raw if not TAG.match(t)]
    if bad:
        errors.add(
            "tags",
            f"{bad[0]!r} is not a tag: start with a letter or digit, then letters, digits "
            "and _ . : = / - (at most 64 characters)",
        )
    unique = tuple(dict.fromkeys(raw))
    if len(unique) > MAX_TAGS:
        errors.add("tags", f"a job has at most {MAX_TAGS} tags")
    return unique


def _parse_step(raw: Any, path: str, settings: Settings, errors: _Fields) -> StepSpec | None:
    if not isinstance(raw, Mapping):
        errors.add(path, "each step must be an object with a 'kind'")
        return None
    kind = raw.get("kind")
    if kind == "docker":
        return _parse_docker(raw, path, settings, errors)
    if kind == "function":
        return _parse_function(raw, path, settings, errors)
    errors.add(f"{path}.kind", f"unknown step kind {kind!r}: use 'docker' or 'function'")
    return None


def _parse_docker(raw: Mapping[str, Any], path: str, s: Settings, errors: _Fields) -> DockerStep:
    for bad, why in FORBIDDEN_DOCKER_FIELDS.items():
        if bad in raw:
            errors.add(f"{path}.{bad}", why)
    allowed = {
        "kind",
        "name",
        "image",
        "command",
        "env",
        "timeout_s",
        "retries",
        "retry_backoff_s",
        "stop_grace_s",
        "mem_limit",
        "cpus",
        "network",
        "mounts",
        "privileged",
    }
    _unknown(raw, allowed | set(FORBIDDEN_DOCKER_FIELDS), path, errors)
    network, mounts, privileged = host_access(raw, path, s, errors)

    image = _image(raw.get("image"), f"{path}.image", s, errors)

    command = _command(raw.get("command"), f"{path}.command", errors)
    env = _env(raw.get("env", {}), f"{path}.env", errors)
    timeout = _number(
        raw.get("timeout_s", 3600),
        f"{path}.timeout_s",
        errors,
        low=0,
        high=s.docker_max_timeout_s,
        low_open=True,
    )
    retries = _integer(raw.get("retries", 0), f"{path}.retries", errors, low=0, high=10)
    backoff = _number(
        raw.get("retry_backoff_s", 1.0), f"{path}.retry_backoff_s", errors, low=0, high=3600
    )
    grace = _number(raw.get("stop_grace_s", 10.0), f"{path}.stop_grace_s", errors, low=0, high=600)
    mem = _mem_limit(raw.get("mem_limit"), f"{path}.mem_limit", s, errors)
    cpus = _cpus(raw.get("cpus"), f"{path}.cpus", s, errors)
    return DockerStep(
        image=image,
        command=command,
        env=env,
        timeout_s=timeout,
        retries=retries,
        retry_backoff_s=backoff,
        stop_grace_s=grace,
        mem_limit=mem,
        cpus=cpus,
        name=_step_name(raw, path, errors),
        network=network,
        mounts=mounts,
        privileged=privileged,
    )


def _image(value: Any, path: str, s: Settings, errors: _Fields) -> str:
    """A step's image reference, refused unless it matches the operator's allow-list."""
    if not isinstance(value, str) or len(value) > 512 or not IMAGE_REF.fullmatch(value):
        errors.add(
            path,
            "give an image reference such as 'jobsys/busybox:local' (lower-case name, "
            "optional :tag or @sha256:digest)",
        )
        return ""
    if not any(fnmatch.fnmatchcase(value, pat) for pat in s.docker_images):
        allowed_list = ", ".join(s.docker_images)
        errors.add(path, f"image {value!r} is not allowed; allowed: {allowed_list}")
    return value


_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def mem_bytes(size: str) -> int:
    """Bytes in a Docker memory size (``'256m'``, ``'1g'``, ``'512'``), as Docker reads it."""
    if not MEM_LIMIT.match(size):
        raise ValueError(f"{size!r} is not a size such as '256m' or '1g'")
    unit = size[-1].lower() if size[-1].isalpha() else ""
    return int(size[: len(size) - len(unit)]) * _UNITS[unit]


def _mem_limit(
    value: Any, path: str, s: Settings, errors: _Fields, *, cap: str = "docker_max_mem"
) -> str | None:
    """A step's memory limit, at most the operator's ``cap`` setting
    (``JOBSYS_DOCKER_MAX_MEM``, or ``JOBSYS_SANDBOX_MAX_MEM`` for function steps)."""
    if value is None:
        return None
    if not isinstance(value, str) or not MEM_LIMIT.match(value):
        errors.add(path, "give a size such as '256m' or '1g'")
        return None
    most_text, variable = getattr(s, cap), f"JOBSYS_{cap.upper()}"
    try:
        most = mem_bytes(most_text)
    except ValueError as exc:
        raise ConfigError(f"{variable}={most_text!r} is not a size such as '4g'") from exc
    if mem_bytes(value) > most:
        errors.add(
            path,
            f"{value} is more than the {most_text} the operator allows a step "
            f"({variable}); ask for less",
        )
    return value


def _cpus(value: Any, path: str, s: Settings, errors: _Fields) -> float | None:
    """A step's CPUs, above 0 and at most the operator's ``JOBSYS_DOCKER_MAX_CPUS``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        errors.add(path, "give a number")
        return None
    if not 0 < value <= s.docker_max_cpus:
        errors.add(
            path,
            f"give a number above 0 and at most {s.docker_max_cpus:g}, the most the operator "
            "allows a step (JOBSYS_DOCKER_MAX_CPUS)",
        )
    return float(value)


def docker_step_problems(spec: Mapping[str, Any], s: Settings) -> dict[str, str]:
    """What this process's operator refuses in a stored Docker step spec, by field.

    A worker asks before it starts a container: its settings may be stricter
    than those of the web app that accepted the step (or than the web app's
    settings were when the step was stored). The limits checked are the ones
    the container would get: the step's own, else this worker's defaults.
    """
    errors = _Fields()
    host_access(spec, "step", s, errors)
    _image(spec.get("image"), "step.image", s, errors)
    _mem_limit(spec.get("mem_limit") or s.docker_default_mem_limit, "step.mem_limit", s, errors)
    _cpus(spec.get("cpus") or s.docker_default_cpus, "step.cpus", s, errors)
    return errors.errors


def host_access(
    raw: Mapping[str, Any], path: str, s: Settings, errors: _Fields
) -> tuple[str, tuple[Mount, ...], bool]:
    """A step's network, mounts and privileged flag, each refused unless this
    process's operator allowed it. The web app checks at submit; the worker checks
    again with its own settings before it starts a container."""
    network = raw.get("network", "none")
    if network not in ("none", "bridge"):
        errors.add(f"{path}.network", "use 'none' (the default) or 'bridge'")
        network = "none"
    elif network != "none" and not s.docker_allow_network:
        errors.add(
            f"{path}.network",
            "Docker steps run without a network; the operator can allow one with "
            "JOBSYS_DOCKER_ALLOW_NETWORK=true",
        )
    privileged = raw.get("privileged", False)
    if not isinstance(privileged, bool):
        errors.add(f"{path}.privileged", "use true or false")
        privileged = False
    elif privileged and not s.docker_allow_privileged:
        errors.add(
            f"{path}.privileged",
            "jobsys runs no privileged containers unless the operator sets "
            "JOBSYS_DOCKER_ALLOW_PRIVILEGED=true",
        )
    return network, _mounts(raw.get("mounts", []), f"{path}.mounts", s, errors), privileged


def _mounts(raw: Any, path: str, s: Settings, errors: _Fields) -> tuple[Mount, ...]:
    """Mounts below the operator's roots, judged by their path alone.

    This process may not see the files (the web app seldom does), and a symbolic
    link below a root could point anywhere on the host, so this check is only a
    first filter: the worker walks the real path again right before it creates
    the container (``workers.containers.resolve_mount_source``).
    """
    if raw in (None, []):
        return ()
    if not s.docker_mount_roots:
        errors.add(
            path,
            "host mounts are not allowed; the operator can allow folders with "
            "JOBSYS_DOCKER_MOUNT_ROOTS=/srv/data,...",
        )
        return ()
    if not isinstance(raw, list) or len(raw) > 20:
        errors.add(path, "give a list (at most 20) of {source, target, read_only}")
        return ()
    found = []
    roots = [posixpath.normpath(r) for r in s.docker_mount_roots]
    for i, item in enumerate(raw):
        where = f"{path}[{i}]"
        if not isinstance(item, Mapping) or set(item) - {"source", "target", "read_only"}:
            errors.add(where, "give {source, target, read_only}")
            continue
        source, target = item.get("source"), item.get("target")
        read_only = item.get("read_only", True)
        for name, value in (("source", source), ("target", target)):
            if not isinstance(value, str) or not value.startswith("/") or ".." in value.split("/"):
                errors.add(f"{where}.{name}", "give an absolute path without '..'")
        if not isinstance(read_only, bool):
            errors.add(f"{where}.read_only", "use true or false")
        if not isinstance(source, str) or not isinstance(target, str):
            continue
        clean = posixpath.normpath(source)
        if not any(clean == r or clean.startswith(r.rstrip("/") + "/") for r in roots):
            errors.add(
                f"{where}.source",
                f"{source!r} is outside the folders the operator allows: {', '.join(roots)}",
            )
        found.append(
            Mount(source=clean, target=posixpath.normpath(target), read_only=read_only is not False)
        )
    return tuple(found)


def _parse_function(
    raw: Mapping[str, Any], path: str, s: Settings, errors: _Fields
) -> FunctionStep:
    _unknown(
        raw,
        {
            "kind",
            "name",
            "function",
            "items",
            "chunk_size",
            "tolerate_failures",
            "soft_time_limit_s",
            "time_limit_s",
            "secrets",
            "memory_limit",
            "network",
        },
        path,
        errors,
    )
    function = raw.get("function")
    if is_pickled(function):
        if not isinstance(function[PICKLE_KEY], str) or not function[PICKLE_KEY]:
            errors.add(f"{path}.function", "$pickle must be a base64 string")
    elif not (isinstance(function, str) and IMPORT_PATH.match(function)):
        errors.add(
            f"{path}.function",
            "give an import path 'package.module:function' or {'$pickle': <base64 cloudpickle>}",
        )
    items = raw.get("items")
    if not isinstance(items, list):
        errors.add(f"{path}.items", "give a list of items to map the function over")
        items = []
    elif len(items) > s.max_items:
        errors.add(f"{path}.items", f"at most {s.max_items} items per step (got {len(items)})")
    chunk_size = raw.get("chunk_size")
    if chunk_size is not None:
        chunk_size = _integer(chunk_size, f"{path}.chunk_size", errors, low=1, high=1_000_000)
    tolerate = raw.get("tolerate_failures", False)
    if not isinstance(tolerate, bool):
        errors.add(f"{path}.tolerate_failures", "use true or false")
        tolerate = False
    soft, hard = (
        None
        if raw.get(key) is None
        else _number(
            raw[key], f"{path}.{key}", errors, low=0, high=s.docker_max_timeout_s, low_open=True
        )
        for key in ("soft_time_limit_s", "time_limit_s")
    )
    if soft is not None and hard is not None and soft >= hard:
        errors.add(f"{path}.soft_time_limit_s", "make the soft limit shorter than time_limit_s")
    return FunctionStep(
        function=function,
        items=tuple(items),
        chunk_size=chunk_size,
        tolerate_failures=tolerate,
        name=_step_name(raw, path, errors),
        soft_time_limit_s=soft,
        time_limit_s=hard,
        secrets=_secret_names(raw.get("secrets", []), f"{path}.secrets", errors),
        memory_limit=_mem_limit(
            raw.get("memory_limit"), f"{path}.memory_limit", s, errors, cap="sandbox_max_mem"
        ),
        network=_sandbox_network(raw.get("network", False), f"{path}.network", s, errors),
    )


def _sandbox_network(value: Any, path: str, s: Settings, errors: _Fields) -> bool:
    if not isinstance(value, bool):
        errors.add(path, "use true or false")
        return False
    if value and not s.sandbox_allow_network:
        errors.add(
            path,
            "the operator does not let function steps use the network "
            "(JOBSYS_SANDBOX_ALLOW_NETWORK); leave it out",
        )
    return value


def _secret_names(value: Any, path: str, errors: _Fields) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > 50:
        errors.add(path, 'give a list of at most 50 secret names, e.g. ["stripe"]')
        return ()
    for name in value:
        problem = check_secret_name(name)
        if problem is not None:
            errors.add(path, problem)
            return ()
    return tuple(dict.fromkeys(value))


def chunk_size_for(step: FunctionStep, settings: Settings, slots: int | None = None) -> int:
    """The caller's chunk size, or the fewest chunks of at most ``max_chunk_size``
    items whose count is a multiple of ``slots`` (the worker slots that run them;
    ``settings.parallelism`` or its fallback when not given), no chunk below ``min_chunk_size``.

    A chunk costs a few milliseconds of broker, database and worker round trips
    whatever its items do, and a sandboxed chunk some more (its own process), so
    cheap items want big chunks (a chord of 10,000 one-item tasks took 28 s; up
    to 2,500 items a chunk, 100,000 no-op items run sandboxed in less time than
    raw Celery's best layout, chunks of 1,000), and no map is cut finer than
    ``min_chunk_size`` (50 items on 8 slots are 3 chunks, not 8 of 7). Expensive
    items want every slot busy to the end: a chunk count that is a multiple of
    the slots gives each slot the same share, with no uneven last round.
    """
    if step.chunk_size:
        return step.chunk_size
    n = max(1, len(step.items))
    per_slot = max(1, slots or settings.parallelism or settings.fallback_parallelism)
    rounds = math.ceil(math.ceil(n / settings.max_chunk_size) / per_slot)
    even = math.ceil(n / (rounds * per_slot))
    return max(1, min(n, max(settings.min_chunk_size, even)))


def chunk_bounds(n_items: int, size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each chunk; an empty item list still gets one empty chunk."""
    if n_items == 0:
        return [(0, 0)]
    return [(start, min(start + size, n_items)) for start in range(0, n_items, size)]


def docker_step_from_form(form: Mapping[str, str]) -> dict[str, Any]:
    """Turn the submit form's strings into the dict ``parse_job_spec`` reads.

    ``env`` holds NAME=value lines; ``secrets`` holds NAME=secret lines, each
    the spec's ``{"secret": ...}`` reference (the value is fetched by the worker)."""
    env: dict[str, Any] = dict(_form_lines(form, "env", "NAME=value"))
    named = _form_lines(form, "secrets", "NAME=secret")
    twice = [key for key, _ in named if key in env]
    if twice:
        raise SpecError({"secrets": f"{twice[0]} is in Environment too: give each variable once"})
    env.update((key, {"secret": name.strip()}) for key, name in named)
    step: dict[str, Any] = {
        "kind": "docker",
        "image": (form.get("image") or "").strip(),
        "command": form.get("command") or "",
        "env": env,
    }
    for name in ("timeout_s", "retries", "mem_limit", "cpus"):
        value = (form.get(name) or "").strip()
        if value:
            step[name] = _form_number(value) if name != "mem_limit" else value
    spec: dict[str, Any] = {
        "name": (form.get("name") or "").strip() or "job",
        "steps": [step],
        "tags": form.get("tags") or "",
    }
    if form.get("project"):
        spec["project"] = form["project"]
    return spec


def _form_lines(form: Mapping[str, str], field: str, shape: str) -> list[tuple[str, str]]:
    pairs = []
    for n, line in enumerate((form.get(field) or "").splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise SpecError({field: f"line {n}: write {shape}, one per line"})
        pairs.append((key.strip(), value))
    return pairs


def form_field(path: str, spec: Mapping[str, Any] | None) -> str:
    """The submit form's field for a parser's field path (``steps[0].image`` is
    ``image``): a variable's error is under the box the variable came from
    (``spec``, the form as a spec; None when the form itself was refused)."""
    head, _, key = path.partition(".env.")
    if key and head == "steps[0]" and spec is not None:
        env = spec["steps"][0].get("env") or {}
        return "secrets" if isinstance(env.get(key), Mapping) else "env"
    return path.split(".")[-1]


def _form_number(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return text  # left for the parser to reject with the field's own message


def _unknown(raw: Mapping[str, Any], allowed: set[str], path: str, errors: _Fields) -> None:
    for key in raw:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            errors.add(where, f"unknown field; allowed: {', '.join(sorted(allowed))}")


def _step_name(raw: Mapping[str, Any], path: str, errors: _Fields) -> str:
    name = raw.get("name", "")
    if not isinstance(name, str) or len(name) > 200:
        errors.add(f"{path}.name", "give a name of at most 200 characters")
        return ""
    return name


def _command(value: Any, path: str, errors: _Fields) -> tuple[str, ...]:
    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError as exc:
            errors.add(path, f"cannot split the command line: {exc}")
            return ()
    if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
        errors.add(path, 'give a non-empty list of strings, e.g. ["sh", "-c", "echo hi"]')
        return ()
    if not value[0].strip():
        errors.add(path, "the first word of the command must not be empty")
    return tuple(value)


def _env(value: Any, path: str, errors: _Fields) -> dict[str, str | dict[str, str]]:
    if not isinstance(value, Mapping):
        errors.add(path, 'give an object of NAME: "value" pairs')
        return {}
    env: dict[str, str | dict[str, str]] = {}
    for key, val in value.items():
        if not isinstance(key, str) or not ENV_NAME.match(key):
            errors.add(
                f"{path}.{key}", "names are letters, digits and _, not starting with a digit"
            )
        elif isinstance(val, Mapping):
            problem = check_secret_name(val.get("secret")) if set(val) == {"secret"} else ""
            if problem is None:
                env[key] = {"secret": val["secret"]}
            else:
                errors.add(
                    f"{path}.{key}", problem or 'name a secret as {"secret": "NAME"}, nothing else'
                )
        elif isinstance(val, bool) or not isinstance(val, str | int | float):
            errors.add(f"{path}.{key}", 'values are strings (or numbers), or {"secret": "NAME"}')
        else:
            env[key] = str(val)
    return env


def _number(
    value: Any, path: str, errors: _Fields, *, low: float, high: float, low_open: bool = False
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        errors.add(path, "give a number")
        return float(low)
    if value < low or (low_open and value == low) or value > high:
        bound = "above" if low_open else "at least"
        errors.add(path, f"give a number {bound} {low:g} and at most {high:g}")
    return float(value)


def _integer(value: Any, path: str, errors: _Fields, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        errors.add(path, "give a whole number")
        return low
    if not low <= value <= high:
        errors.add(path, f"give a whole number from {low} to {high}")
    return value
