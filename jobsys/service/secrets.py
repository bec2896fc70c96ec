"""Named secrets: set by admins, used by jobs, seen by no one.

A value is encrypted with ``JOBSYS_SECRETS_KEY`` (Fernet: AES-CBC with an
HMAC) before it reaches the database, and decrypted only on the worker that
runs a step naming it, at the moment it runs: never in a stored spec, an API
answer, a page, the audit trail, Flower or a task message. A secret belongs to
a project, is managed by that project's admins, and only that project's jobs
may name it. Each secret names
the roles that may reference it in a spec they submit themselves; a catalog
template (which an admin put there) may reference any secret, and whoever may
start the template uses it. What a step prints is stored and streamed with
each value it was given replaced by ``***`` (``Redactor``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from jobsys.auth import ROLE_RIGHTS, Principal, Right, require, require_somewhere
from jobsys.context import Context
from jobsys.errors import NotFoundError, SecretUnavailable, SpecError
from jobsys.service.audit import audit_entry
from jobsys.service.progress import LogRecord
from jobsys.service.projects import check_project_name, visible_or_missing
from jobsys.service.scope import in_projects
from jobsys.service.users import require_project
from jobsys.specs import DEFAULT_PROJECT, check_secret_name
from jobsys.store.models import Secret, utcnow

#: Who may name a new secret in a spec they submit, unless the admin says otherwise.
DEFAULT_ROLES = ("developer", "admin")
#: A value is an environment variable's: text without NUL, of a sane size (and
#: small enough for a JSON body of ``JOBSYS_MAX_JSON_BODY_BYTES``).
MAX_VALUE_BYTES = 32 * 1024
MASK = "***"
#: A line of a multi-line value (a PEM key) is masked on its own only from this
#: length: shorter lines (``-----``) are too common to mean the secret.
MIN_MASKED_LINE = 8


@dataclass(frozen=True)
class SecretInfo:
    """A secret as anyone sees it: everything but the value."""

    name: str
    roles: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    updated_by: str
    project: str = DEFAULT_PROJECT

    @classmethod
    def of(cls, row: Secret) -> SecretInfo:
        return cls(
            row.name, tuple(row.roles), row.created_at, row.updated_at, row.updated_by, row.project
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "name": self.name,
            "roles": list(self.roles),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "updated_by": self.updated_by,
        }


def set_secret(
    ctx: Context,
    principal: Principal,
    name: str,
    value: str,
    *,
    roles: Sequence[str] | None = None,
    project: str = DEFAULT_PROJECT,
) -> tuple[SecretInfo, bool]:
    """Create the secret, or change its value (and its roles, when given); the
    secret as stored, and whether it is new."""
    require(principal, Right.ADMIN, check_project_name(project))
    problems: dict[str, str] = {}
    name_problem = check_secret_name(name)
    if name_problem is not None:
        problems["name"] = name_problem
    value_problem = _value_problem(value)
    if value_problem is not None:
        problems["value"] = value_problem
    checked_roles = None if roles is None else _roles(roles, problems)
    if problems:
        raise SpecError(problems)
    token = _box(ctx).encrypt(value.encode()).decode()
    with ctx.sessions.begin() as session:
        require_project(session, project)
        row = session.get(Secret, (project, name))
        created = row is None
        if row is None:
            # No roles at all is a choice too: then only catalog templates use it.
            roles_now = DEFAULT_ROLES if checked_roles is None else checked_roles
            row = Secret(project=project, name=name, roles=list(roles_now), value=token)
            session.add(row)
        else:
            row.value = token
            if checked_roles is not None:
                row.roles = list(checked_roles)
        row.updated_at, row.updated_by = utcnow(), principal.name
        session.flush()
        action = "secret.add" if created else "secret.change"
        detail = {"roles": list(row.roles)}
        session.add(audit_entry(principal, action, name, detail=detail, project=project))
        return SecretInfo.of(row), created


def list_secrets(
    ctx: Context, principal: Principal, *, project: str | None = None
) -> list[SecretInfo]:
    """The secrets of the projects the caller is an admin of (or of ``project``)."""
    admin_of = require_somewhere(principal, Right.ADMIN)
    query = select(Secret).order_by(Secret.project, Secret.name)
    query = in_projects(query, Secret.project, admin_of, project)
    with ctx.sessions() as session:
        return [SecretInfo.of(r) for r in session.scalars(query)]


def delete_secret(
    ctx: Context, principal: Principal, name: str, *, project: str = DEFAULT_PROJECT
) -> None:
    """Delete it; a job that names it fails when its step starts, saying so."""
    check_project_name(project)
    if not principal.can(Right.ADMIN, project):
        visible_or_missing(principal, project, f"no secret named {name!r} in project {project!r}")
        require(principal, Right.ADMIN, project)
    with ctx.sessions.begin() as session:
        gone = session.execute(
            delete(Secret).where(Secret.project == project, Secret.name == name)
        ).rowcount
        if not gone:
            raise NotFoundError(f"no secret named {name!r} in project {project!r}")
        session.add(audit_entry(principal, "secret.delete", name, project=project))


def check_secret_use(
    ctx: Context,
    refs: Sequence[tuple[str, str]],
    principal: Principal | None,
    *,
    session: Session | None = None,
    project: str = DEFAULT_PROJECT,
) -> None:
    """Refuse (400, naming the field and the secret) a reference to a secret that
    ``project`` does not hold or that ``principal``'s role there may not use.
    ``principal`` None: the spec was vetted by someone else (a catalog template,
    a rerun of a stored spec), so only that each secret exists is checked.
    Inside a caller's transaction, pass its ``session``."""
    if not refs:
        return
    names = {name for _, name in refs}
    if session is not None:
        rows = _rows(session, project, names)
    else:
        with ctx.sessions() as own:
            rows = _rows(own, project, names)
    problems: dict[str, str] = {}
    role = principal.role_in(project) if principal is not None else ""
    for path, name in refs:
        row = rows.get(name)
        if row is None:
            problems[path] = (
                f"no secret named {name!r} in project {project!r}: an admin adds it with "
                f"`jobsys secrets set {name} --project {project}`"
            )
        elif principal is not None and role not in row.roles:
            who = f"the roles {', '.join(row.roles)}" if row.roles else "catalog templates"
            problems[path] = (
                f"secret {name!r} may be named only by {who}; your role in project "
                f"{project!r} is '{role or 'none'}' (start a catalog template that uses it)"
            )
    if problems:
        raise SpecError(problems)


def reveal_secrets(
    ctx: Context, principal: Principal, names: Iterable[str], *, project: str = DEFAULT_PROJECT
) -> dict[str, str]:
    """The values of ``names`` in ``project``, for the worker that runs a step of
    that project naming them (it passes ``SYSTEM``); SecretUnavailable when one
    is gone or unreadable here."""
    require(principal, Right.ADMIN, project)
    wanted = set(names)
    if not wanted:
        return {}
    with ctx.sessions() as session:
        rows = _rows(session, project, wanted)
    missing = sorted(wanted - set(rows))
    if missing:
        raise SecretUnavailable(
            f"the step names the secret {missing[0]!r}, which was deleted after the job "
            "was submitted: an admin sets it again, then rerun the job"
        )
    box = _box(ctx)
    values = {}
    for name, row in rows.items():
        try:
            values[name] = box.decrypt(row.value.encode()).decode()
        except InvalidToken as exc:
            raise SecretUnavailable(
                f"the secret {name!r} was stored with another JOBSYS_SECRETS_KEY than this "
                "worker's: give every web process and worker the same key"
            ) from exc
    return values


def secret_names(spec: Mapping[str, Any]) -> list[str]:
    """The secrets a stored step spec (``Step.spec``) or job spec names, in order."""
    steps = spec.get("steps", [spec])
    found: list[str] = []
    for step in steps:
        for value in (step.get("env") or {}).values():
            if isinstance(value, Mapping) and "secret" in value:
                found.append(value["secret"])
        found += step.get("secrets") or []
    return list(dict.fromkeys(found))


class Redactor:
    """Replaces each secret value in a log line by ``***``, longest first (so a
    value that contains another is masked whole)."""

    def __init__(self, values: Iterable[str]) -> None:
        needles = set()
        for value in values:
            if value:
                needles.add(value)
                needles.update(
                    line.strip()
                    for line in value.splitlines()
                    if len(line.strip()) >= MIN_MASKED_LINE
                )
        self._needles = sorted(needles, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._needles)

    def __call__(self, line: str) -> str:
        for needle in self._needles:
            if needle in line:
                line = line.replace(needle, MASK)
        return line

    def log(self, record: LogRecord) -> LogRecord:
        """The log record with its line masked (the same record when nothing was)."""
        line = self(record.line) if self._needles else record.line
        return record if line == record.line else replace(record, line=line)


def _box(ctx: Context) -> Fernet:
    return Fernet(ctx.settings.secrets_key.encode())


def _rows(session: Session, project: str, names: set[str]) -> dict[str, Secret]:
    query = select(Secret).where(Secret.project == project, Secret.name.in_(names))
    return {r.name: r for r in session.scalars(query)}


def _value_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return "give the secret's value as non-empty text"
    if "\x00" in value:
        return "a value cannot hold a NUL character (it becomes an environment variable)"
    if len(value.encode()) > MAX_VALUE_BYTES:
        return f"a value is at most {MAX_VALUE_BYTES // 1024} KiB"
    return None


def _roles(roles: Sequence[str], problems: dict[str, str]) -> tuple[str, ...]:
    if not isinstance(roles, list | tuple) or not all(isinstance(r, str) for r in roles):
        problems["roles"] = f"give a list of roles, some of {', '.join(ROLE_RIGHTS)}"
        return ()
    unknown = [r for r in roles if r not in ROLE_RIGHTS]
    if unknown:
        problems["roles"] = f"unknown role {unknown[0]!r}; use some of {', '.join(ROLE_RIGHTS)}"
    return tuple(dict.fromkeys(roles))


__all__ = [
    "DEFAULT_ROLES",
    "Redactor",
    "SecretInfo",
    "check_secret_use",
    "delete_secret",
    "list_secrets",
    "reveal_secrets",
    "secret_names",
    "set_secret",
]
