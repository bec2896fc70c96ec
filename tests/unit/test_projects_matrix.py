"""Two projects, every role in one of them, every route against the other's objects.

``alpha`` and ``beta`` each hold a job, a schedule, a template, a secret and a
token. A user who has a role in ``alpha`` only (one user per role, through a
token of theirs for ``alpha``, and through a signed-in page session) walks
every route of the app (``ROUTES`` of the permission matrix) with ``beta``'s
objects in the URL. The test fails when

- a route that names one of ``beta``'s objects answers 2xx or 3xx: it read or
  changed something of another project;
- it answers 403 to a role that has the route's right: "not yours" must read
  as 404 so that the object's existence does not leak (routes for global roles
  only, such as Flower and user management, are 403 by design);
- any answer carries a marker of ``beta``'s objects (the job's or schedule's id,
  their names, the token's key id, beta's member);
- a server error, for any of them.

And, so that it cannot pass on an empty world, each role sees ``alpha``'s job in
its own list, and ``beta``'s objects stay as they were.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask

from jobsys import service
from jobsys.auth import SYSTEM
from jobsys.context import Context
from tests.support.auth import bearer_of
from tests.support.specs import docker_spec
from tests.unit.test_permission_matrix import (
    PUBLIC,
    README_ROLES,
    ROUTES,
    Route,
    filled,
    walking_context,
)
from webui import create_app

ROLES = ("viewer", "operator", "developer", "admin")
#: Routes for global roles only: they show or change every project at once.
GLOBAL_ONLY = ("/flower", "/api/users", "/users", "/api/catalog/reload", "/catalog/reload")
PROJECT_ADMIN = (
    "POST /api/projects",
    "PUT /api/projects/",
    "DELETE /api/projects/",
    "POST /projects",
)

TEMPLATE = """\
description: {project}'s own template
steps:
  - kind: docker
    image: jobsys/busybox:local
    command: [sh, -c, "echo {{{{ who | shell }}}}"]
variables:
  who: {{type: string, default: world}}
"""


@dataclass
class World:
    app: Flask
    ctx: Context
    #: role -> a token of alpha's member with that role
    tokens: dict[str, str]
    #: role -> a page session reference of the same member
    sessions: dict[str, str]
    #: what a route's placeholders are filled with: beta's objects
    values: dict[str, str]
    #: strings that only beta's objects hold
    markers: tuple[str, ...]
    alpha_job: str

    def url(self, route: Route) -> str:
        return filled(route, self.values)


def _catalog(root: Path) -> Path:
    """A catalog folder: each project's folder holds a template named ``betaonly``
    in beta and ``alphaonly`` in alpha (jobs/<project>/<template>/job.yaml)."""
    for project, name in (("alpha", "alphaonly"), ("beta", "betaonly")):
        folder = root / project / name
        folder.mkdir(parents=True)
        (folder / "job.yaml").write_text(TEMPLATE.format(project=project))
    return root


@pytest.fixture
def world(ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    live = walking_context(ctx, monkeypatch)
    for project in ("alpha", "beta"):
        service.create_project(live, SYSTEM, project)
    service.reload_catalog(live, SYSTEM, _catalog(tmp_path / "jobs"))
    jobs = {
        p: service.submit_job(live, SYSTEM, {**docker_spec(), "name": f"{p}-job", "project": p})
        for p in ("alpha", "beta")
    }
    beta_done = service.submit_job(live, SYSTEM, {**docker_spec(), "project": "beta"})
    service.cancel_job(live, SYSTEM, beta_done.id)
    schedule = service.create_schedule(
        live,
        SYSTEM,
        {"name": "beta-nightly", "cron": "0 3 * * *", "spec": docker_spec(), "project": "beta"},
    )
    service.set_secret(live, SYSTEM, "betaonly", "a-beta-value", project="beta")
    service.add_user(
        live, SYSTEM, name="bea", password="a-long-password-1", role="admin", project="beta"
    )
    beta_token = service.create_token(
        live, SYSTEM, name="bea", role="viewer", user="bea", project="beta"
    )
    tokens, sessions = {}, {}
    for role in ROLES:
        name = f"al-{role}"
        service.add_user(
            live, SYSTEM, name=name, password="a-long-password-1", role=role, project="alpha"
        )
        token = service.create_token(
            live, SYSTEM, name=name, role=role, user=name, project="alpha"
        ).token
        tokens[role] = token
        sessions[role] = service.start_web_session(live, token=token).reference
    app = create_app(context=live)
    app.config["WTF_CSRF_ENABLED"] = False
    token_id = next(t.id for t in service.list_tokens(live, SYSTEM) if t.project == "beta")
    beta_tasks = [
        p.task_id  # type: ignore[attr-defined]
        for p in ctx.dispatcher.published  # type: ignore[attr-defined]
        if p.job_id == jobs["beta"].id
    ]
    values = {
        "job_id": jobs["beta"].id,
        "name": "betaonly",
        "ref": schedule.id,
        "token_id": str(token_id),
        "task_id": beta_tasks[0],
        "project": "beta",
        "user": "bea",
    }
    markers = (
        jobs["beta"].id,
        beta_done.id,
        schedule.id,
        "beta-nightly",
        "betaonly",
        beta_token.token.split(".")[0],
        "bea",
        "beta-job",
    )
    yield World(app, live, tokens, sessions, values, markers, jobs["alpha"].id)


def _global_only(route: Route) -> bool:
    key = f"{route.method} {route.rule}"
    return route.rule.startswith(GLOBAL_ONLY) or key.startswith(PROJECT_ADMIN)


def _names_an_object(route: Route) -> bool:
    return bool(re.search(r"<(?:int:)?(job_id|name|ref|token_id|project|user)>", route.rule)) or (
        "<task_id>" in route.sample
    )


def _ask(world: World, route: Route, role: str, page: bool) -> tuple[int, str]:
    client = world.app.test_client()
    headers = {}
    if page:
        with client.session_transaction() as session:
            session["ref"] = world.sessions[role]
        headers["Sec-Fetch-Site"] = "same-origin"
    else:
        headers = bearer_of(world.tokens[role])
    body = {} if route.method in ("POST", "PATCH", "PUT") and not route.form else None
    answer = client.open(
        world.url(route),
        method=route.method,
        headers=headers,
        json=body,
        data=dict(route.form) or None,
    )
    text = answer.get_data(as_text=True) if not answer.is_streamed else ""
    status = answer.status_code
    answer.close()
    return status, text


def test_every_role_of_one_project_against_the_others_objects(world: World) -> None:
    problems: list[str] = []
    checked = 0
    for route in ROUTES:
        if route.right == PUBLIC:
            continue
        page = not route.rule.startswith(("/api/", "/metrics"))
        for role in ROLES:
            status, text = _ask(world, route, role, page)
            checked += 1
            where = f"{role:>9} in alpha: {route.method} {world.url(route)}: {status}"
            leaked = [m for m in world.markers if m in text]
            if leaked:
                problems.append(f"{where}, shows beta's {leaked}")
            if status >= 500 and not (route.rule.startswith("/flower") and status == 503):
                problems.append(f"{where}, a server error")
            elif _global_only(route):
                if status < 400:
                    problems.append(f"{where}, but the route is for global roles only")
            elif _names_an_object(route):
                has = route.right in README_ROLES[role]
                if status < 400:
                    problems.append(f"{where}: it acted on or read beta's object")
                elif has and status == 403:
                    problems.append(f"{where}: not 404, so beta's object's existence leaks")
    assert checked > 300
    assert problems == [], "\n".join(problems)


def test_each_role_sees_its_own_projects_objects_and_beta_is_untouched(world: World) -> None:
    """The control: the same members see alpha's things (so the walk above did not
    pass on empty answers), and beta's job, schedule and secret are as they were."""
    for role in ROLES:
        client = world.app.test_client()
        listed = client.get("/api/jobs", headers=bearer_of(world.tokens[role])).get_json()
        assert [j["id"] for j in listed["jobs"]] == [world.alpha_job], role
        assert [j["project"] for j in listed["jobs"]] == ["alpha"]
        catalog = client.get("/api/catalog", headers=bearer_of(world.tokens[role])).get_json()
        assert [t["name"] for t in catalog["templates"]] == ["alphaonly"], role
        mine = client.get("/api/projects", headers=bearer_of(world.tokens[role])).get_json()
        assert [p["name"] for p in mine["projects"]] == ["alpha"]
    beta_job = service.get_job(world.ctx, SYSTEM, world.values["job_id"])
    assert beta_job.status == "queued" and beta_job.project == "beta"
    schedule = service.get_schedule(world.ctx, SYSTEM, world.values["ref"])
    assert schedule.enabled and schedule.project == "beta"
    assert [s.name for s in service.list_secrets(world.ctx, SYSTEM)] == ["betaonly"]
    assert service.reveal_secrets(world.ctx, SYSTEM, ["betaonly"], project="beta")


def test_a_project_admin_manages_their_project_and_nothing_else(world: World) -> None:
    """alpha's admin sets and lists alpha's secrets and tokens, reads alpha's
    audit, and gets 404 for beta's; 403 naming why for Flower and users."""
    admin = bearer_of(world.tokens["admin"])
    client = world.app.test_client()
    alpha_secret = {"name": "ALPHA", "value": "v", "project": "alpha"}
    made = client.post("/api/secrets", json=alpha_secret, headers=admin)
    assert made.status_code == 201, made.get_json()
    assert [s["name"] for s in client.get("/api/secrets", headers=admin).get_json()["secrets"]] == [
        "ALPHA"
    ]
    beta_secret = {"name": "X", "value": "v", "project": "beta"}
    refused = client.post("/api/secrets", json=beta_secret, headers=admin)
    assert refused.status_code == 403
    gone = client.delete("/api/secrets/betaonly?project=beta", headers=admin)
    assert gone.status_code == 404
    tokens = client.get("/api/tokens", headers=admin).get_json()["tokens"]
    assert {t["project"] for t in tokens} == {"alpha"}
    audit = client.get("/api/audit", headers=admin).get_json()["entries"]
    assert audit and {e["project"] for e in audit} == {"alpha"}
    flower = client.get("/flower/", headers=admin)
    assert flower.status_code == 403
    assert "for global roles only" in flower.get_json()["message"]
    # Submitting into beta, or naming beta's secret from alpha, is refused and stores nothing.
    into_beta = client.post("/api/jobs", json={**docker_spec(), "project": "beta"}, headers=admin)
    assert into_beta.status_code == 404
    step = {**docker_spec()["steps"][0], "env": {"T": {"secret": "betaonly"}}}
    borrowed = client.post("/api/jobs", json={"name": "b", "steps": [step]}, headers=admin)
    assert borrowed.status_code == 400
    assert "no secret named 'betaonly' in project 'alpha'" in str(borrowed.get_json())
    listed = service.list_jobs(world.ctx, SYSTEM).items
    assert len(listed) == 3  # alpha's, beta's two: nothing new
