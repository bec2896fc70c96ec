"""Settings: one frozen object built from ``JOBSYS_*`` environment variables.

Nobody else reads ``os.environ``. Every field has a default that runs the
whole stack on one machine (SQLite in the working directory, Redis on
localhost), so ``make run`` needs no configuration at all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from jobsys.datadir import private_file
from jobsys.errors import ConfigError
from jobsys.keys import check_fernet_key, local_key, new_fernet_key

PREFIX = "JOBSYS_"


@dataclass(frozen=True)
class Settings:
    """Everything a jobsys process needs to know; env var ``JOBSYS_<FIELD>`` sets each field."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Defaults to ``sqlite:///<data_dir>/jobsys.db``.
    database_url: str = ""
    #: HMAC key for pickled payloads. Defaults to a key kept in ``<data_dir>/secret.key``
    #: so every local process agrees on it without configuration.
    secret_key: str = ""
    #: The web app's session and CSRF key, its own so that knowing the signing key
    #: does not give it (nor it the signing key). Default: ``<data_dir>/session.key``.
    session_key: str = ""
    #: The Fernet key named secrets are encrypted with at rest (``service.secrets``).
    #: Default: ``<data_dir>/secrets.key``. Every web process and worker must share
    #: it: on more than one host, set it (``jobsys secrets new-key`` makes one).
    secrets_key: str = ""
    #: Workers still run pickles signed before signatures named their job, step and
    #: purpose (``jobsys-signed-v1``), so jobs queued before an upgrade finish.
    #: Turn off once those have drained: then only bound signatures run.
    accept_legacy_signatures: bool = True
    data_dir: str = ".jobsys"
    #: The catalog folder: one sub-folder per job template, each with a job.yaml.
    catalog_dir: str = "jobs"
    #: Largest request body the API accepts, in bytes: for the routes that carry
    #: specs or items (job submits, schedule create and update, catalog start and render).
    max_payload_bytes: int = 16 * 1024 * 1024
    #: Largest body of every other JSON route (tokens, users, cancel, ...), in bytes,
    #: counted after gzip is inflated.
    max_json_body_bytes: int = 64 * 1024
    #: Largest list of items one function step may map over.
    max_items: int = 1_000_000
    #: Largest chunk the automatic chunk size picks; a caller may still ask for more.
    #: A chunk costs some milliseconds whatever its items do (broker and database
    #: round trips, and in the sandbox a process forked, run and cleaned up
    #: after: about 5 ms of CPU), so cheap items want big chunks.
    max_chunk_size: int = 2500
    #: Smallest chunk the automatic chunk size picks (unless the step has fewer
    #: items): below it a chunk's own round trips cost more than its items.
    min_chunk_size: int = 20
    #: How many chunks run at once across the cluster, used to size chunks
    #: automatically. 0 (the default): the python workers' total ``-c`` as their
    #: heartbeats report it, or ``fallback_parallelism`` while none reports.
    parallelism: int = 0
    fallback_parallelism: int = 8
    #: Seconds a web process reuses the slot count it read from the heartbeats.
    slots_cache_s: float = 5.0
    #: Tasks ``jobsys run`` lets each queue's worker run at once (its ``-c``):
    #: the per-queue concurrency limit on one machine.
    python_concurrency: int = 2
    docker_concurrency: int = 2
    #: Where function steps' code runs: ``on``, in a bubblewrap sandbox of its
    #: own (``workers/sandbox``), or ``off``, in the worker's pool process, next
    #: to its keys: the operator's choice, which workers report (isolation: off).
    sandbox: str = "on"
    #: Who sandboxed code runs as when the worker is root.
    sandbox_user: str = "nobody"
    #: The memory a chunk's sandboxed process may take (an address-space limit),
    #: unless its step asks for other (``memory_limit``, at most sandbox_max_mem).
    sandbox_mem: str = "1g"
    sandbox_max_mem: str = "4g"
    #: Open files and processes (of the sandbox user, counted together) a chunk may have.
    sandbox_max_files: int = 1024
    sandbox_max_procs: int = 256
    #: Whether a function step may ask for the network (``"network": true``).
    sandbox_allow_network: bool = False
    #: Host folders every sandbox gets read-write, at the same path (a shared
    #: scratch folder, a dataset): chunks and jobs can leave files there for
    #: each other. The data folder stays hidden even inside one.
    sandbox_mounts: tuple[str, ...] = ()
    #: fnmatch patterns; a Docker step's image must match one of them.
    docker_images: tuple[str, ...] = ("*",)
    docker_default_mem_limit: str = "512m"
    docker_default_cpus: float = 1.0
    docker_max_timeout_s: int = 24 * 3600
    #: The most memory and CPUs a Docker step may ask for (checked at submit and
    #: again by the worker, against the step's own value or the default).
    docker_max_mem: str = "4g"
    docker_max_cpus: float = 4.0
    #: A Docker step's stored log: each line cut to this many bytes, and only the
    #: last this many bytes (and 100,000 lines) kept, after a line saying what was cut.
    docker_max_log_line_bytes: int = 16 * 1024
    docker_max_log_bytes: int = 10 * 1024 * 1024
    #: Host access a Docker step may ask for; all off unless the operator turns it on.
    docker_allow_network: bool = False
    docker_allow_privileged: bool = False
    #: Host folders (and what is below them) a step may bind-mount; none by default.
    docker_mount_roots: tuple[str, ...] = ()
    #: Seconds a step may sit unpublished before the outbox sweep publishes it.
    outbox_grace_s: float = 5.0
    #: Seconds a Celery result (chunk summaries) lives in Redis.
    result_ttl_s: int = 24 * 3600
    #: Seconds a finished job's event stream (live view replay) stays in Redis.
    events_ttl_s: int = 24 * 3600
    #: Live event streams (``GET /api/jobs/<id>/events``) each hold a web thread
    #: while open: at most this many per principal, per web process (so each
    #: process keeps threads for pages: ``jobsys run`` gives gunicorn 2 processes
    #: of 32 threads) and in the whole deployment (counted in Redis). 0: no cap.
    streams_per_principal: int = 8
    streams_per_process: int = 16
    streams_total: int = 32
    #: Seconds one stream stays open before the server ends it; the browser and
    #: the Python client reconnect with ``Last-Event-ID`` and miss nothing. 0: no limit.
    stream_max_s: float = 300.0
    #: Days to keep finished jobs (steps, tasks, logs, results) and schedule runs;
    #: 0 keeps everything. An hourly beat entry deletes what is older.
    retention_days: int = 0
    #: Seconds the beat leader's Redis lock lives without renewal: how long a
    #: stand-by beat waits before taking over from one that died.
    beat_lock_ttl_s: float = 10.0
    #: Seconds an unacknowledged task message waits before Redis hands it to
    #: another worker: how soon the work of a worker killed mid-task is redelivered.
    #: A running task keeps its own message hidden, so steps may run far longer.
    broker_visibility_timeout_s: float = 300.0
    #: Seconds a task's execution lease lives without renewal (renewed every third
    #: of it): how long a redelivery waits before taking over from a dead run.
    task_lease_ttl_s: float = 30.0
    #: Deliveries of one task after which it is failed instead of run again: a
    #: task whose worker dies every time (a poison item, an OOM kill) must end.
    task_max_deliveries: int = 3
    #: Seconds a dispatched task may go unaccounted for (no lease, not in the
    #: broker) before the lost-task sweep fails it and ends its step.
    lost_task_grace_s: float = 60.0
    #: How often beat runs the lost-task sweep, in seconds.
    lost_task_sweep_s: float = 10.0
    web_host: str = "127.0.0.1"
    web_port: int = 5000
    flower_port: int = 5555
    #: Where the web app's /flower proxy finds Flower; default the local one on flower_port.
    flower_url: str = ""
    #: Hours a signed-in page session lasts (it also ends on sign-out, and when
    #: its user's password or role changes).
    session_hours: float = 12.0
    #: Seconds a form's CSRF token stays valid; a page left open longer is reloaded.
    csrf_time_limit_s: int = 4 * 3600
    #: Behind a reverse proxy: trust its X-Forwarded-For/-Proto/-Host (one hop), so
    #: sign-in throttling sees the client's address and https is recognised.
    trust_proxy: bool = False
    #: ``auto``: session cookies are Secure when the request came over https (directly,
    #: or per X-Forwarded-Proto when trust_proxy is set); ``always``; ``never``.
    secure_cookies: str = "auto"
    #: Failed sign-ins for one name, or from one address, within sign_in_window_s
    #: after which sign-in answers 429 until the window ends.
    sign_in_max_failures: int = 5
    sign_in_window_s: int = 15 * 60
    #: Password hashes one web process computes at once; more sign-ins are refused (429).
    sign_in_hash_slots: int = 4
    #: Wrong secrets for one token key id within sign_in_window_s after which that
    #: key id answers 429 before any hash (a token this process accepted still works).
    token_max_failures: int = 20
    #: OpenID Connect sign-in: the provider's issuer URL (its discovery document is
    #: ``<issuer>/.well-known/openid-configuration``); empty: password and token
    #: sign-in only. With it, client id and secret as registered at the provider.
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    #: The sign-in button reads "Sign in with <oidc_name>".
    oidc_name: str = "single sign-on"
    #: The scopes asked for; some providers put the groups claim behind a scope of its own.
    oidc_scope: str = "openid profile email"
    #: The ID token claim that lists a user's groups.
    oidc_claim: str = "groups"
    #: Groups to roles: ``group=project:role`` pairs, comma-separated; the project
    #: ``*`` is every project, ``global`` the global role
    #: (``data-eng=data:developer,ops=*:operator,platform=global:admin``).
    oidc_roles: str = ""
    #: The address people reach jobsys at (the OpenID redirect comes back there);
    #: default the local one, ``http://<web_host>:<web_port>``.
    public_url: str = ""

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``JOBSYS_*`` variables, then fill the derived defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, f.type, raw)
        values.update(overrides)
        return cls(**values).resolved()

    def to_env(self) -> dict[str, str]:
        """The ``JOBSYS_*`` variables that rebuild these settings in a child process."""
        env = {}
        for f in fields(self):
            value = getattr(self, f.name)
            env[PREFIX + f.name.upper()] = (
                ",".join(value) if isinstance(value, tuple) else str(value)
            )
        return env

    def resolved(self) -> Settings:
        """Fill the defaults that depend on ``data_dir`` (database file, key files)."""
        settings = self
        if not settings.database_url:
            # Made here, 0600, so SQLite (and its WAL files) never hold it under the umask.
            path = private_file(settings.data_path.resolve() / "jobsys.db")
            settings = replace(settings, database_url=f"sqlite:///{path}")
        if not settings.secret_key:
            settings = replace(settings, secret_key=local_key(settings.data_path, "secret.key"))
        if not settings.session_key:
            settings = replace(settings, session_key=local_key(settings.data_path, "session.key"))
        if not settings.secrets_key:
            settings = replace(
                settings,
                secrets_key=local_key(settings.data_path, "secrets.key", make=new_fernet_key),
            )
        for name, key in (
            ("SECRET_KEY", settings.secret_key),
            ("SESSION_KEY", settings.session_key),
        ):
            if len(key) < 16:
                raise ConfigError(f"JOBSYS_{name} is too short: use at least 16 characters")
        check_fernet_key(settings.secrets_key)
        if settings.sandbox not in ("on", "off"):
            raise ConfigError(f"JOBSYS_SANDBOX={settings.sandbox!r}: give on or off")
        relative = [m for m in settings.sandbox_mounts if not os.path.isabs(m)]
        if relative:
            raise ConfigError(
                f"JOBSYS_SANDBOX_MOUNTS: {relative[0]!r} is not an absolute path; give host folders"
            )
        return settings


def client_project(environ: Mapping[str, str] | None = None) -> str | None:
    """The project a client works in when none is passed: ``JOBSYS_PROJECT``
    (none: the server's default for the caller, ``default`` or their only project)."""
    env = os.environ if environ is None else environ
    return env.get(PREFIX + "PROJECT") or None


def client_env(environ: Mapping[str, str] | None = None) -> tuple[str, str | None]:
    """The server URL and token a client uses when none are passed: ``JOBSYS_URL``
    (default http://127.0.0.1:5000) and ``JOBSYS_TOKEN``."""
    env = os.environ if environ is None else environ
    return env.get(PREFIX + "URL") or "http://127.0.0.1:5000", env.get(PREFIX + "TOKEN") or None


def _parse(name: str, annotation: Any, raw: str) -> Any:
    kind = str(annotation)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if raw.strip().lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
                raise ValueError(raw)
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if kind.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"{PREFIX}{name.upper()}={raw!r} is not a valid {kind}") from exc
    return raw


__all__ = ["Settings", "client_env"]
