"""The permission matrix, written by hand from the README (issue 14), not from
the ``@needs`` decorators: every role against every route of the app.

``ROUTES`` below says, for each (method, rule) of the url map, which right the
README's description gives it; ``README_ROLES`` says which rights each role has
("viewer reads; operator starts catalog jobs, cancels, reruns; developer also
submits any spec, pickled code included; admin also manages users, tokens, secrets,
schedules and the catalog"). The test fails when

- the app has a route the table does not name, or the table names one the app
  lacks (add the new route here, with the right the README gives it);
- a caller without credentials is let through a route that needs them (API
  routes: 401; pages may send people to the sign-in page instead);
- a role without the right gets anything but 403 naming that right;
- a role with the right gets 401, 403 or a server error (500 and up): the
  route must work for it, not merely not refuse it. The one exception is
  narrow: Flower routes may answer 503 "Flower does not answer", because no
  Flower runs here (``FLOWER_DOWN``).

To add a route: one ``Route(...)`` line (``sample`` for a ``<path:...>`` rule
whose right depends on the path; several lines may share a rule).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import fakeredis
import pytest
from flask import Flask

from jobsys import service
from jobsys.auth import SCRYPT, SYSTEM
from jobsys.broker.events import RedisEventBus
from jobsys.context import Context
from tests.support.auth import bearer_of
from tests.support.examples import EXAMPLES
from tests.support.specs import docker_spec
from webui import create_app

#: No credentials needed: the README's sign-in page, sign-out, the OpenAPI
#: document ("no token needed") and the page assets (the pages load nothing from
#: outside, so the sign-in page's own stylesheet must load before sign-in).
PUBLIC = "public"

#: The rights each role has, from the README's "Roles:" paragraph. ``schedule`` is
#: the README's "(admin)" on schedule changes: only admins have it.
README_ROLES: dict[str, frozenset[str]] = {
    "none": frozenset(),
    "viewer": frozenset({"view"}),
    "operator": frozenset({"view", "start", "cancel", "rerun"}),
    "developer": frozenset({"view", "start", "cancel", "rerun", "submit", "submit_code"}),
    "admin": frozenset(
        {"view", "start", "cancel", "rerun", "submit", "submit_code", "schedule", "admin"}
    ),
}


@dataclass(frozen=True)
class Route:
    method: str
    rule: str
    right: str
    #: For a ``<path:path>`` rule: the path this line is about (placeholders filled too).
    sample: str = ""
    #: A form to send instead of an empty JSON body.
    form: tuple[tuple[str, str], ...] = ()


ROUTES: list[Route] = [
    # -- open to anyone -----------------------------------------------------
    Route("GET", "/login", PUBLIC),
    Route("POST", "/login", PUBLIC, form=(("name", "olga"), ("password", "a-long-password-1"))),
    Route("POST", "/logout", PUBLIC),
    Route("GET", "/api/openapi.json", PUBLIC),
    Route("GET", "/login/oidc", PUBLIC),  # "Sign in with ..." (404 when none is set up)
    Route("GET", "/login/oidc/callback", PUBLIC),
    Route("GET", "/static/<path:filename>", PUBLIC, sample="style.css"),
    # -- view: "viewer reads" -------------------------------------------------
    Route("GET", "/", "view"),  # the Dashboard
    Route("GET", "/jobs", "view"),
    Route("GET", "/jobs/<job_id>", "view"),
    Route("GET", "/jobs/<job_id>/events", "view"),  # the job page following live
    Route("GET", "/jobs/<job_id>/results.json", "view"),  # "results (download as JSON)"
    Route("GET", "/workers", "view"),
    Route("GET", "/catalog", "view"),
    Route("GET", "/catalog/<name>", "view"),
    Route("GET", "/schedules", "view"),
    Route("GET", "/schedules/<ref>", "view"),
    Route("GET", "/metrics", "view"),  # "to a token with the view right"
    Route("GET", "/api/jobs", "view"),
    Route("GET", "/api/jobs/<job_id>", "view"),
    Route("POST", "/api/jobs/wait", "view"),  # waits for jobs to end, reads only
    Route("GET", "/api/jobs/<job_id>/tasks", "view"),
    Route("GET", "/api/jobs/<job_id>/logs", "view"),
    Route("GET", "/api/jobs/<job_id>/events", "view"),
    Route("GET", "/api/jobs/<job_id>/results", "view"),
    Route("GET", "/api/stats", "view"),
    Route("GET", "/api/dashboard", "view"),
    Route("GET", "/api/workers", "view"),
    Route("GET", "/api/catalog", "view"),
    Route("GET", "/api/catalog/<name>", "view"),
    Route("POST", "/api/catalog/<name>/render", "view"),  # renders, runs nothing
    Route("GET", "/api/schedules", "view"),
    Route("GET", "/api/schedules/<ref>", "view"),
    Route("GET", "/api/schedules/<ref>/runs", "view"),
    Route("GET", "/api/projects", "view"),  # "lists your projects"
    # Flower through the web app: "reading its pages, API and /metrics needs view".
    Route("GET", "/flower/", "view"),
    Route("GET", "/flower/<path:path>", "view", sample="api/workers"),
    Route("GET", "/flower/<path:path>", "view", sample="metrics"),
    # -- start: "operator starts catalog jobs" --------------------------------
    Route("POST", "/api/catalog/<name>/start", "start"),
    Route("POST", "/catalog/<name>", "start"),  # the Catalog page's start form
    # -- submit: "developer also submits any spec" ----------------------------
    Route("POST", "/api/jobs", "submit"),
    Route("GET", "/jobs/new", "submit"),
    Route("POST", "/jobs/new", "submit"),
    # -- cancel: "operator ... cancels" ---------------------------------------
    Route("POST", "/api/jobs/<job_id>/cancel", "cancel"),
    Route("POST", "/jobs/<job_id>/cancel", "cancel"),
    Route("POST", "/jobs/cancel", "cancel"),  # the Jobs page's bulk cancel
    # Flower: "revoke/terminate/abort needs cancel".
    Route("POST", "/flower/<path:path>", "cancel", sample="api/task/revoke/<task_id>"),
    Route("POST", "/flower/<path:path>", "cancel", sample="api/task/abort/<task_id>"),
    # -- rerun: "operator ... reruns" (resume is a rerun from where it stopped) --
    Route("POST", "/api/jobs/<job_id>/rerun", "rerun"),
    Route("POST", "/api/jobs/<job_id>/resume", "rerun"),
    Route("POST", "/jobs/<job_id>/rerun", "rerun"),
    Route("POST", "/jobs/<job_id>/resume", "rerun"),
    Route("POST", "/api/schedules/<ref>/run-now", "rerun"),  # "(operator and up)"
    Route("POST", "/schedules/<ref>/run-now", "rerun"),
    # -- schedule: "(admin) create a schedule", PATCH, DELETE -------------------
    Route("POST", "/api/schedules", "schedule"),
    Route("PATCH", "/api/schedules/<ref>", "schedule"),
    Route("DELETE", "/api/schedules/<ref>", "schedule"),
    Route("POST", "/schedules", "schedule"),
    Route("POST", "/schedules/<ref>", "schedule"),
    Route("POST", "/schedules/<ref>/enable", "schedule"),
    Route("POST", "/schedules/<ref>/disable", "schedule"),
    Route("POST", "/schedules/<ref>/delete", "schedule"),
    Route("POST", "/catalog/<name>/schedule", "schedule"),
    # -- admin: "manages users, tokens, schedules and the catalog"; the audit --
    Route("POST", "/api/catalog/reload", "admin"),
    Route("POST", "/catalog/reload", "admin"),
    Route("GET", "/api/tokens", "admin"),
    Route("POST", "/api/tokens", "admin"),
    Route("POST", "/api/tokens/<int:token_id>/revoke", "admin"),
    Route("POST", "/tokens/<int:token_id>/revoke", "admin"),
    Route("GET", "/api/users", "admin"),
    Route("POST", "/api/users", "admin"),
    Route("PATCH", "/api/users/<name>", "admin"),
    Route("GET", "/users", "admin"),
    Route("POST", "/users", "admin"),
    Route("POST", "/users/<name>", "admin"),
    Route("GET", "/api/secrets", "admin"),  # "admins manage named secrets"
    Route("POST", "/api/secrets", "admin"),
    Route("DELETE", "/api/secrets/<name>", "admin"),
    Route("GET", "/secrets", "admin"),
    Route("POST", "/secrets", "admin", form=(("name", "matrix"), ("value", "a-value"))),
    Route("POST", "/secrets/<name>/delete", "admin"),
    Route("GET", "/api/audit", "admin"),
    # "a global admin manages projects and users"
    Route("POST", "/api/projects", "admin"),
    Route("POST", "/projects", "admin", form=(("name", "matrix"),)),  # the Users page's form
    Route("PUT", "/api/projects/<project>/members/<user>", "admin"),
    Route("DELETE", "/api/projects/<project>/members/<user>", "admin"),
    Route("GET", "/audit", "admin"),
    # Flower: "anything else that changes something ... needs admin".
    Route("POST", "/flower/<path:path>", "admin", sample="api/worker/pool/grow/python@h"),
    Route("POST", "/flower/<path:path>", "admin", sample="api/worker/shutdown/python@h"),
    Route("POST", "/flower/<path:path>", "admin", sample="api/task/apply/jobsys.x"),
    Route("POST", "/flower/<path:path>", "admin", sample="api/task/send-task/jobsys.x"),
    Route("PUT", "/flower/<path:path>", "admin", sample="api/x"),
    Route("DELETE", "/flower/<path:path>", "admin", sample="api/x"),
    Route("POST", "/flower/", "admin"),
    Route("PUT", "/flower/", "admin"),
    Route("DELETE", "/flower/", "admin"),
]

#: Routes answered to programs: no credentials is a 401 there. The pages send
#: a person without a session to the sign-in page instead, and so does Flower's
#: API through the proxy (it shares Flower's page tree): the README's "401
#: without credentials" holds for bearer callers only there.
MACHINE_PREFIXES = ("/api/", "/metrics")


def url_map(app: Flask) -> set[tuple[str, str]]:
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


@dataclass
class World:
    """One of each thing a route can name, so the routes reach their real code."""

    app: Flask
    tokens: dict[str, str]
    values: dict[str, str]

    def url(self, route: Route) -> str:
        return filled(route, self.values)


def filled(route: Route, values: dict[str, str]) -> str:
    """The route's URL with its placeholders (and its sample's) filled from ``values``."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1).rpartition(":")[2]
        if name in ("path", "filename"):
            return re.sub(r"<([^>]+)>", fill, route.sample)
        return values[name]

    return re.sub(r"<([^>]+)>", fill, route.rule)


def walking_context(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> Context:
    """``ctx`` for a walk over every route: Redis for events, stream slots and
    sign-in counters is a fake one; Flower and a real Redis are nowhere (closed
    ports), so nothing leaves the process; token hashing is cheap (not what a
    walk tests)."""
    monkeypatch.setitem(SCRYPT, "n", 2**4)
    settings = replace(ctx.settings, redis_url="redis://127.0.0.1:9/0", flower_port=9)
    return Context(
        settings=settings,
        sessions=ctx.sessions,
        dispatcher=ctx.dispatcher,
        events=RedisEventBus(fakeredis.FakeRedis()),
    )


@pytest.fixture
def world(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    live = walking_context(ctx, monkeypatch)
    service.reload_catalog(live, SYSTEM, EXAMPLES)
    job = service.submit_job(live, SYSTEM, docker_spec())
    service.cancel_job(live, SYSTEM, job.id)  # ended: its event stream replays and ends
    service.create_schedule(
        live, SYSTEM, {"name": "nightly", "cron": "0 3 * * *", "spec": docker_spec()}
    )
    service.add_user(live, SYSTEM, name="olga", password="a-long-password-1", role="viewer")
    service.set_secret(live, SYSTEM, "echo", "a-secret-value")
    spare = service.create_token(live, SYSTEM, name="spare", role="viewer")
    # Each role held globally (in every project): the README's roles, and what
    # Flower asks for. Roles within one project have their own matrix
    # (test_projects_matrix.py).
    tokens = {
        role: service.create_token(
            live, SYSTEM, name=f"matrix-{role}", role=role, global_token=True
        ).token
        for role in README_ROLES
        if role != "none"
    }
    app = create_app(context=live)
    app.config["WTF_CSRF_ENABLED"] = False  # CSRF has its own tests; this one is about rights
    token_id = next(t.id for t in service.list_tokens(live, SYSTEM) if t.name == spare.name)
    task_id = ctx.dispatcher.published[0].task_id  # type: ignore[attr-defined]
    values = {"job_id": job.id, "name": "echo", "ref": "nightly", "token_id": str(token_id)}
    values["task_id"] = task_id
    values["project"], values["user"] = "default", "olga"
    yield World(app=app, tokens=tokens, values=values)


def test_the_table_names_exactly_the_routes_of_the_app(world: World) -> None:
    table = {(r.method, r.rule) for r in ROUTES}
    app = url_map(world.app)
    assert sorted(app - table) == [], "routes the README table above does not name"
    assert sorted(table - app) == [], "routes in the table the app does not have"
    assert {r.right for r in ROUTES} <= set(README_ROLES["admin"]) | {PUBLIC}


def test_every_role_against_every_route(world: World) -> None:
    problems: list[str] = []
    for route in ROUTES:
        url = world.url(route)
        body = {} if route.method in ("POST", "PATCH", "PUT") and not route.form else None
        for role, rights in README_ROLES.items():
            if route.right == PUBLIC and role != "none":
                continue  # open to anyone: credentials change nothing there
            headers = bearer_of(world.tokens[role]) if role != "none" else {}
            answer = world.app.test_client().open(
                url, method=route.method, headers=headers, json=body, data=dict(route.form) or None
            )
            seen = Answer(
                answer.status_code,
                answer.headers.get("Location", ""),
                answer.get_json(silent=True) or {},
            )
            answer.close()  # a live stream stops here
            problem = judge(route, url, role, rights, seen)
            if problem:
                problems.append(problem)
    assert problems == [], "\n".join(problems)


@dataclass(frozen=True)
class Answer:
    status: int
    location: str = ""
    body: dict[str, Any] = field(default_factory=dict)


def flower_down(route: Route, answer: Answer) -> bool:
    """The proxy's own 503 for a Flower that does not answer (none runs here),
    and nothing else: another route's 503, or any other 5xx, is a problem."""
    return (
        route.rule.startswith("/flower/")
        and answer.status == 503
        and answer.body.get("error") == "DispatchError"
        and str(answer.body.get("message", "")).startswith("Flower does not answer")
    )


def judge(route: Route, url: str, role: str, rights: frozenset[str], answer: Answer) -> str | None:
    """What is wrong with ``answer`` to ``role`` on ``route``, or None."""
    status = answer.status
    where = f"{role:>9} {route.method} {url} ({route.right}): {status}"
    if route.right == PUBLIC:
        if status in (401, 403):
            return f"{where}, but it needs no credentials"
    elif role == "none":
        machine = url.startswith(MACHINE_PREFIXES)
        to_sign_in = status == 302 and "/login" in answer.location
        if not (status == 401 or (to_sign_in and not machine)):
            return f"{where}, not 401" + ("" if machine else " or sign-in")
    elif route.right in rights:
        if status in (401, 403):
            return f"{where}, but the role has the right"
        if status >= 500 and not flower_down(route, answer):
            return f"{where}, a server error for a role that has the right: {answer.body}"
    elif status != 403:
        return f"{where}, not 403"
    elif answer.body.get("right") != route.right:
        return f"{where}: the 403 names {answer.body}"
    return None


def test_a_server_error_for_a_role_with_the_right_is_a_problem() -> None:
    """A 500 once passed as "not refused"; only the proxy's 503 for a Flower
    that is not running is let through, and only on Flower routes."""
    jobs = Route("GET", "/api/jobs", "view")
    flower = Route("GET", "/flower/<path:path>", "view", sample="api/workers")
    viewer = README_ROLES["viewer"]
    down = {"error": "DispatchError", "message": "Flower does not answer at http://127.0.0.1:9"}
    assert judge(jobs, "/api/jobs", "viewer", viewer, Answer(200)) is None
    assert judge(jobs, "/api/jobs", "viewer", viewer, Answer(404)) is None
    for status in (500, 502, 503):
        assert judge(jobs, "/api/jobs", "viewer", viewer, Answer(status)), status
        assert judge(flower, "/flower/api/workers", "viewer", viewer, Answer(status)), status
    # the proxy's own 503 on a Flower route, and only that
    assert judge(flower, "/flower/api/workers", "viewer", viewer, Answer(503, body=down)) is None
    assert judge(jobs, "/api/jobs", "viewer", viewer, Answer(503, body=down))
    assert judge(flower, "/flower/api/workers", "viewer", viewer, Answer(500, body=down))
    broker = {"error": "DispatchError", "message": "the broker does not answer"}
    assert judge(flower, "/flower/api/workers", "viewer", viewer, Answer(503, body=broker))


def test_the_roles_in_the_code_are_the_readme_roles() -> None:
    from jobsys.auth import ROLE_RIGHTS

    code = {role: frozenset(r.value for r in rights) for role, rights in ROLE_RIGHTS.items()}
    assert code == {role: rights for role, rights in README_ROLES.items() if role != "none"}
