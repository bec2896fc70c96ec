"""Page sessions (issue 14, items 6 and 11): the cookie holds a reference, never
a token; a session ends on sign-out, password change, role change, disable and
after JOBSYS_SESSION_HOURS; cookies are Secure over https; ``next`` after
signing in is a path on this site only."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import timedelta
from typing import Any
from urllib.parse import quote, unquote

import pytest
from flask import Flask
from flask.testing import FlaskClient

from jobsys import service
from jobsys.auth import SYSTEM, Principal
from jobsys.broker.dispatch import MemoryDispatcher
from jobsys.config import Settings
from jobsys.context import Context
from jobsys.store.db import make_session_factory
from jobsys.store.models import WebSession, utcnow
from tests.support.auth import csrf_of
from webui import create_app
from webui.views import local_path

ADMIN = Principal("ada", "admin", "test")
PASSWORD = "correct horse"


def login_csrf(client: FlaskClient, **kwargs: Any) -> str:
    return csrf_of(client.get("/login", **kwargs).get_data(as_text=True))


def sign_in(client: FlaskClient, next_: str | None = None, **form: str) -> Any:
    url = "/login" if next_ is None else "/login?" + next_
    return client.post(url, data={**form, "csrf_token": login_csrf(client)})


def signed_in(client: FlaskClient) -> bool:
    answer = client.get("/jobs")
    assert answer.status_code in (200, 302)
    return answer.status_code == 200


@pytest.fixture
def app(ctx: Context) -> Flask:
    service.add_user(ctx, ADMIN, name="olga", password=PASSWORD, role="operator")
    return create_app(context=ctx)


#: ``next`` values that would leave the site (a browser reads ``/<tab>/x`` and
#: ``/\\x`` as ``//x``), in the forms they arrive in a query string.
HOSTILE_NEXT = [
    "next=/%09/evil.example",
    "next=/%0a/evil.example",
    "next=/%0d%0a/evil.example",
    "next=//evil.example",
    "next=///evil.example",
    "next=/\\evil.example",
    "next=/%5cevil.example",
    "next=%5c%5cevil.example",
    "next=https://evil.example/",
    "next=https:/evil.example",
    "next=javascript:alert(1)",
    "next=evil.example",
    "next=%2F%2Fevil.example",
    "next=/%252F/evil.example",
    "next=/%2509/evil.example",
    "next=/%25252F%25252Fevil.example",
    "next=/%00/evil.example",
    "next=/%7f/evil.example",
    "next=%20//evil.example",
    "next=",
]


def test_next_must_be_a_path_on_this_site(app: Flask, ctx: Context) -> None:
    token = service.create_token(ctx, SYSTEM, name="web", role="viewer").token
    for hostile in HOSTILE_NEXT:
        answer = sign_in(app.test_client(), hostile, token=token)
        if answer.status_code == 400:  # refused before it reached the sign-in (a NUL, say)
            continue
        assert answer.status_code == 302, hostile
        assert answer.headers["Location"] == "/", f"{hostile} went to {answer.headers['Location']}"
        assert local_path(unquote(hostile.removeprefix("next="))) is None, hostile


@pytest.mark.parametrize("raw", ["/\x00/evil.example", "/\t/evil.example", "/\u0085//x", "/a\\b"])
def test_control_characters_and_backslashes_anywhere_are_refused(raw: str) -> None:
    assert local_path(raw.encode().decode("unicode_escape")) is None


@pytest.mark.parametrize(
    "local", ["/jobs/new", "/jobs?status=failed&page=2", "/schedules", "/jobs?q=a%2Fb"]
)
def test_a_local_next_is_followed(app: Flask, ctx: Context, local: str) -> None:
    token = service.create_token(ctx, SYSTEM, name="web", role="viewer").token
    answer = sign_in(app.test_client(), "next=" + quote(local), token=token)
    assert answer.headers["Location"] == local


def session_of(app: Flask, client: FlaskClient) -> dict[str, Any]:
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    return dict(serializer.loads(cookie.value))


def test_no_cookie_holds_a_token(app: Flask, ctx: Context) -> None:
    token = service.create_token(ctx, SYSTEM, name="web", role="developer").token
    client = app.test_client()
    answer = sign_in(client, token=token)
    assert answer.status_code == 302 and signed_in(client)
    set_cookies = " ".join(answer.headers.getlist("Set-Cookie"))
    secret = token.split(".", 1)[1]
    stored = session_of(app, client)
    assert secret not in set_cookies and token not in str(stored)
    assert set(stored) <= {"ref", "csrf_token", "_permanent"}
    with ctx.sessions() as session:
        row = session.get(WebSession, hashlib.sha256(stored["ref"].encode()).hexdigest())
        assert row is not None and row.token_id is not None
        # The row holds the reference's hash: the database has no cookie value that works.
        assert session.get(WebSession, stored["ref"]) is None


def copy_of(app: Flask, client: FlaskClient) -> FlaskClient:
    """Another browser holding a copy of the cookie (a stolen one, say)."""
    name = app.config["SESSION_COOKIE_NAME"]
    cookie = client.get_cookie(name)
    assert cookie is not None
    other = app.test_client()
    other.set_cookie(name, cookie.value)
    return other


def test_sign_out_ends_the_session_everywhere(app: Flask) -> None:
    client = app.test_client()
    sign_in(client, name="olga", password=PASSWORD)
    copy = copy_of(app, client)
    assert signed_in(copy)
    page = client.get("/jobs").get_data(as_text=True)
    csrf = csrf_of(page)
    assert client.post("/logout", data={"csrf_token": csrf}).status_code == 302
    assert not signed_in(client) and not signed_in(copy)


@pytest.mark.parametrize(
    "change",
    [{"password": "a new password"}, {"role": "viewer"}, {"disabled": True}],
    ids=["password", "role", "disabled"],
)
def test_a_change_to_the_user_ends_their_sessions(
    app: Flask, ctx: Context, change: dict[str, Any]
) -> None:
    client = app.test_client()
    sign_in(client, name="olga", password=PASSWORD)
    token = service.create_token(ctx, SYSTEM, name="t", role="operator", user="olga").token
    with_token = app.test_client()
    sign_in(with_token, token=token)
    service.add_user(ctx, ADMIN, name="ivan", password=PASSWORD, role="operator")
    bystander = app.test_client()
    sign_in(bystander, name="ivan", password=PASSWORD)
    assert signed_in(client) and signed_in(with_token) and signed_in(bystander)
    service.update_user(ctx, ADMIN, "olga", **change)
    assert not signed_in(client), "the user's password session ended"
    assert not signed_in(with_token), "sessions opened with the user's token ended"
    assert signed_in(bystander), "other people's sessions go on"


def test_setting_the_same_role_keeps_the_session(app: Flask, ctx: Context) -> None:
    client = app.test_client()
    sign_in(client, name="olga", password=PASSWORD)
    service.update_user(ctx, ADMIN, "olga", role="operator")
    assert signed_in(client)


def test_a_session_ends_after_session_hours(
    app: Flask, ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ctx.settings.session_hours == 12
    client = app.test_client()
    sign_in(client, name="olga", password=PASSWORD)
    assert signed_in(client)
    later = utcnow() + timedelta(hours=12, seconds=1)
    monkeypatch.setattr("jobsys.service.web_sessions.utcnow", lambda: later)
    answer = client.get("/jobs")
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/login")
    with pytest.raises(Exception, match="expired after 12 hours"):
        service.session_principal(ctx, session_of(app, client)["ref"])
    assert app.config["PERMANENT_SESSION_LIFETIME"] == timedelta(hours=12)


def test_old_cookies_that_held_a_token_no_longer_sign_in(app: Flask, ctx: Context) -> None:
    token = service.create_token(ctx, SYSTEM, name="old", role="admin").token
    client = app.test_client()
    with client.session_transaction() as session:
        session["token"] = token
    assert not signed_in(client)


def app_with(settings: Settings, **changes: Any) -> Flask:
    settings = replace(settings, **changes)
    ctx = Context(
        settings=settings, sessions=make_session_factory(settings), dispatcher=MemoryDispatcher()
    )
    if not any(u.name == "olga" for u in service.list_users(ctx, ADMIN)):  # one database
        service.add_user(ctx, ADMIN, name="olga", password=PASSWORD, role="operator")
    return create_app(context=ctx)


def login_cookie(app: Flask, **kwargs: Any) -> str:
    client = app.test_client()
    csrf = login_csrf(client, **kwargs)
    # Over https Flask-WTF also checks that the form came from this site, as a
    # browser's Referer shows.
    headers = kwargs.setdefault("headers", {})
    https = kwargs.get("base_url", "").startswith("https:")
    https = https or headers.get("X-Forwarded-Proto") == "https"
    headers["Referer"] = f"{'https' if https else 'http'}://localhost/login"
    answer = client.post(
        "/login", data={"name": "olga", "password": PASSWORD, "csrf_token": csrf}, **kwargs
    )
    assert answer.status_code == 302
    return next(c for c in answer.headers.getlist("Set-Cookie") if c.startswith("session="))


def test_cookies_are_secure_over_https(settings: Settings) -> None:
    https = {"headers": {"X-Forwarded-Proto": "https"}}
    plain = app_with(settings)
    assert "Secure" not in login_cookie(plain)
    assert "Secure" in login_cookie(plain, base_url="https://localhost")
    assert "Secure" not in login_cookie(plain, **https), "the header is not trusted by default"
    proxied = app_with(settings, trust_proxy=True)
    assert "Secure" in login_cookie(proxied, **https)
    assert "Secure" not in login_cookie(proxied)
    assert "Secure" in login_cookie(app_with(settings, secure_cookies="always"))
    never = app_with(settings, secure_cookies="never")
    assert "Secure" not in login_cookie(never, base_url="https://localhost")
    for cookie in (login_cookie(plain), login_cookie(proxied, **https)):
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Expires=" in cookie


def test_a_trusted_proxy_gives_the_clients_address(settings: Settings) -> None:
    """Behind the proxy every request comes from its address; throttling must
    count the client's, from X-Forwarded-For."""
    app = app_with(settings, trust_proxy=True)
    client = app.test_client()
    csrf = login_csrf(client)
    client.post(
        "/login",
        data={"name": "olga", "password": "wrong", "csrf_token": csrf},
        headers={"X-Forwarded-For": "203.0.113.9"},
    )
    entries, _ = service.list_audit(app.extensions["jobsys"], ADMIN, outcome="denied")
    assert entries[0].source == "203.0.113.9"


def test_a_bad_secure_cookies_setting_is_refused_at_start(settings: Settings) -> None:
    with pytest.raises(Exception, match="JOBSYS_SECURE_COOKIES"):
        app_with(settings, secure_cookies="sometimes")
