"""The permission matrix, generated from the app's route table: every route
must declare the right it needs (a new route without one fails here), and for
every role it answers 403 exactly when the role lacks that right."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient

from jobsys import service
from jobsys.auth import ROLE_RIGHTS, SYSTEM, Principal
from jobsys.context import Context
from tests.support.auth import bearer_of
from tests.support.examples import EXAMPLES
from webui import create_app
from webui.principal import PUBLIC

UNDECLARED = object()


def requests_of(app: object) -> list[tuple[str, str, object]]:
    found = []
    for rule in app.url_map.iter_rules():  # type: ignore[attr-defined]
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]  # type: ignore[attr-defined]
        url = re.sub(r"<[^>]+>", "nope", re.sub(r"<int:[^>]+>", "999999", rule.rule))
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            needs = getattr(view, "needs", UNDECLARED)
            if callable(needs) and not isinstance(needs, str):  # a right per action
                needs = needs(method, "nope" if "<path:" in rule.rule else "")
            found.append((method, url, needs))
    return found


def test_every_route_checks_the_right_it_declares(ctx: Context) -> None:
    service.reload_catalog(ctx, SYSTEM, EXAMPLES)
    app = create_app(context=ctx)
    app.config["WTF_CSRF_ENABLED"] = False  # CSRF has its own tests; this one is about rights
    # Roles held globally: what every route, Flower's included, is declared for.
    tokens = {
        role: service.create_token(ctx, SYSTEM, name=role, role=role, global_token=True).token
        for role in ROLE_RIGHTS
    }
    # Pages sign in the way the sign-in page does: the cookie holds a session reference.
    references = {
        role: service.start_web_session(ctx, token=token).reference
        for role, token in tokens.items()
    }
    routes = requests_of(app)
    undeclared = [f"{m} {u}" for m, u, needs in routes if needs is UNDECLARED]
    assert undeclared == [], "routes without @needs(...): declare the right each one needs"
    checked = 0
    for method, url, needs in routes:
        if needs == PUBLIC:
            continue
        api = url.startswith("/api/") or url == "/metrics"  # answered to machines
        anonymous = app.test_client().open(url, method=method, json={} if api else None)
        assert anonymous.status_code == (401 if api else 302), f"{method} {url} without credentials"
        for role, rights in ROLE_RIGHTS.items():
            client: FlaskClient = app.test_client()
            # A page's own requests, as a browser marks them (the Flower proxy
            # refuses changes that come from another site).
            headers = bearer_of(tokens[role]) if api else {"Sec-Fetch-Site": "same-origin"}
            if not api:
                with client.session_transaction() as session:
                    session["ref"] = references[role]
            body = {} if api and method in ("POST", "PATCH") else None
            answer = client.open(url, method=method, headers=headers, json=body)
            allowed = needs is None or needs in rights
            if allowed:
                assert answer.status_code not in (401, 403), (
                    f"{role} {method} {url}: {answer.status_code}"
                )
            else:
                assert answer.status_code == 403, f"{role} {method} {url}: {answer.status_code}"
                if api:
                    assert answer.json["right"] == needs.value  # type: ignore[union-attr]
            checked += 1
    assert checked > 150


def test_users_sign_in_and_their_tokens_follow_them(ctx: Context) -> None:
    admin = Principal("ada", "admin", "test")
    service.add_user(ctx, admin, name="olga", password="correct horse", role="operator")
    with pytest.raises(Exception, match="at least 8"):
        service.add_user(ctx, admin, name="short", password="123", role="viewer")
    olga = service.sign_in(ctx, "olga", "correct horse", source="1.2.3.4")
    assert (olga.role, olga.role_in("default")) == ("", "operator")
    with pytest.raises(Exception, match="wrong name or password"):
        service.sign_in(ctx, "olga", "wrong", source="1.2.3.4")
    token = service.create_token(ctx, admin, name="x", role="viewer", user="olga").token
    assert service.authenticate(ctx, token).name == "olga"
    service.update_user(ctx, admin, "olga", disabled=True)
    with pytest.raises(Exception, match="disabled"):
        service.authenticate(ctx, token)
    with pytest.raises(Exception, match="wrong name or password"):
        service.sign_in(ctx, "olga", "correct horse")
    entries, total = service.list_audit(ctx, admin)
    actions = [(e.action, e.outcome) for e in reversed(entries)]
    assert actions == [
        ("user.add", "ok"),
        ("login", "ok"),
        ("login", "denied"),
        ("token.create", "ok"),
        ("user.update", "ok"),
        ("login", "denied"),
    ]
    assert entries[-2].source == "1.2.3.4" and total == 6
    denied, _ = service.list_audit(ctx, admin, outcome="denied", actor="olga")
    assert len(denied) == 2


def test_refusals_and_changes_reach_the_audit_api(ctx: Context) -> None:
    from tests.support.specs import docker_spec

    app = create_app(context=ctx)
    client = app.test_client()
    viewer = service.create_token(ctx, SYSTEM, name="vic", role="viewer").token
    dev = service.create_token(ctx, SYSTEM, name="dan", role="developer").token
    admin = service.create_token(ctx, SYSTEM, name="root", role="admin").token
    assert (
        client.post("/api/jobs", json=docker_spec(), headers=bearer_of(viewer)).status_code == 403
    )
    assert client.get("/api/jobs", headers=bearer_of("jst_forged")).status_code == 401
    job = client.post("/api/jobs", json=docker_spec(), headers=bearer_of(dev)).json
    audit = client.get("/api/audit?per_page=10", headers=bearer_of(admin)).json
    seen = [(e["actor"], e["action"], e["outcome"], e["target"]) for e in audit["entries"]]
    assert ("dan", "job.submit", "ok", job["id"]) in seen
    assert ("vic", "denied", "denied", "POST /api/jobs") in seen
    assert ("anonymous", "denied", "denied", "GET /api/jobs") in seen
    assert client.get("/api/audit", headers=bearer_of(dev)).status_code == 403
    bad = client.get("/api/audit?since=yesterday", headers=bearer_of(admin))
    assert bad.status_code == 400 and "since" in bad.json["fields"]


def test_tokens_are_stored_as_scrypt_hashes(ctx: Context) -> None:
    from sqlalchemy import select

    from jobsys.errors import Unauthenticated
    from jobsys.store.models import Token

    token = service.create_token(ctx, SYSTEM, name="t", role="viewer").token
    with ctx.sessions() as session:
        row = session.scalar(select(Token))
    assert row is not None and row.token_hash.startswith("scrypt$")
    assert token.split(".")[1] not in row.token_hash and row.key_id in token
    assert service.authenticate(ctx, token).role_in("default") == "viewer"
    for wrong in (token[:-2] + "xx", "jst_nodot", token.replace("jst_", "")):
        with pytest.raises(Unauthenticated):
            service.authenticate(ctx, wrong)


def test_admins_list_and_revoke_tokens(ctx: Context) -> None:
    from jobsys.errors import Unauthenticated

    app = create_app(context=ctx)
    client = app.test_client()
    admin = service.create_token(ctx, SYSTEM, name="root", role="admin").token
    victim = service.create_token(ctx, SYSTEM, name="leaked", role="developer").token
    listed = client.get("/api/tokens", headers=bearer_of(admin)).json["tokens"]
    leaked = next(t for t in listed if t["name"] == "leaked")
    assert "token" not in leaked and leaked["key_id"] in victim and not leaked["revoked"]
    assert client.get("/api/jobs", headers=bearer_of(victim)).status_code == 200
    r = client.post(f"/api/tokens/{leaked['id']}/revoke", headers=bearer_of(admin))
    assert r.status_code == 204
    assert client.get("/api/jobs", headers=bearer_of(victim)).status_code == 401
    with pytest.raises(Unauthenticated):
        service.authenticate(ctx, victim)
    assert client.post("/api/tokens/999/revoke", headers=bearer_of(admin)).status_code == 404


def test_users_page_adds_and_manages_users(ctx: Context) -> None:
    from tests.support.auth import csrf_of, signed_in

    client = signed_in(ctx, "admin")
    page = client.get("/users").get_data(as_text=True)
    token = csrf_of(page)
    form = {"name": "pat", "password": "short", "role": "operator", "csrf_token": token}
    bad = client.post("/users", data=form)
    assert bad.status_code == 400 and "at least 8" in bad.get_data(as_text=True)
    assert client.post("/users", data={**form, "password": "long enough"}).status_code == 302
    client.post("/users/pat", data={"role": "viewer", "csrf_token": token})
    client.post("/users/pat", data={"password": "another one", "csrf_token": token})
    assert service.sign_in(ctx, "pat", "another one").role_in("default") == "viewer"
    client.post("/users/pat", data={"action": "disable", "csrf_token": token})
    assert [u.disabled for u in service.list_users(ctx, SYSTEM)] == [True]
    assert "pat" in client.get("/audit?actor=admin").get_data(as_text=True)
