"""Which roles a user who signs in through OpenID Connect gets: the provider's
groups claim, mapped by ``JOBSYS_OIDC_ROLES``.

The mapping is read once, at start, and a mistake in it stops the web app with
the fix, not the first sign-in. Roles follow the claim at every sign-in: what
the provider says now replaces what the user had, so removing someone from a
group at the provider removes their role here at their next sign-in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from jobsys.auth import ROLE_RIGHTS, higher_role
from jobsys.errors import ConfigError
from jobsys.specs import PROJECT_NAME

#: A rule's project that means every project that exists.
EVERY_PROJECT = "*"
#: A rule's project that means the global role (held in every project, now and later).
GLOBAL = "global"


@dataclass(frozen=True)
class RoleRule:
    group: str
    #: A project's name, ``*`` or ``global``.
    project: str
    role: str


@dataclass(frozen=True)
class Granted:
    """What the claim gives: a global role ("" for none) and a role per project."""

    role: str = ""
    projects: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.role or self.projects)


def parse_role_rules(text: str) -> tuple[RoleRule, ...]:
    """``group=project:role`` pairs, comma-separated; ConfigError naming the bad one."""
    rules = []
    for raw in (part.strip() for part in text.split(",")):
        if not raw:
            continue
        group, eq, target = raw.partition("=")
        project, colon, role = target.rpartition(":")
        if not (eq and colon and group.strip() and project.strip()):
            raise ConfigError(
                f"JOBSYS_OIDC_ROLES: {raw!r} is not group=project:role "
                "(e.g. data-eng=data:developer, ops=*:operator, platform=global:admin)"
            )
        project, role = project.strip(), role.strip()
        if role not in ROLE_RIGHTS:
            raise ConfigError(
                f"JOBSYS_OIDC_ROLES: {raw!r} names the role {role!r}; "
                f"use one of {', '.join(ROLE_RIGHTS)}"
            )
        if project not in (EVERY_PROJECT, GLOBAL) and not PROJECT_NAME.match(project):
            raise ConfigError(
                f"JOBSYS_OIDC_ROLES: {raw!r} names {project!r}, which is not a project name; "
                "give a project, * (every project) or global"
            )
        rules.append(RoleRule(group.strip(), project, role))
    return tuple(rules)


def granted(rules: Iterable[RoleRule], groups: Any, projects: Iterable[str]) -> Granted:
    """The roles ``groups`` (the claim's value: a list, or one group as text) give,
    the highest where several rules meet; ``projects`` are those that exist (a
    rule for one that does not is skipped)."""
    if isinstance(groups, str):
        groups = [groups]
    mine = {g for g in groups if isinstance(g, str)} if isinstance(groups, list) else set()
    existing = set(projects)
    role = ""
    per_project: dict[str, str] = {}
    for rule in rules:
        if rule.group not in mine:
            continue
        if rule.project == GLOBAL:
            role = higher_role(role, rule.role)
            continue
        targets = existing if rule.project == EVERY_PROJECT else {rule.project} & existing
        for project in targets:
            per_project[project] = higher_role(per_project.get(project, ""), rule.role)
    return Granted(role, dict(sorted(per_project.items())))
