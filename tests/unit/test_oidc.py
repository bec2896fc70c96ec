"""Sign-in with an OpenID Connect provider: the web app (in this process) against
a real provider on loopback (``tests/support/oidc_provider.py``), over HTTP,
through the whole authorization code flow with PKCE.

What the provider says goes through Authlib's checks before anything is made:
a token signed by another key, altered, for another audience or issuer,
expired or without our nonce, and a callback with a wrong ``state``, each end
on a refusal page with no user and no session. Roles come from the groups
claim at every sign-in; a user whose groups map to nothing is told why.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from jobsys import service
from jobsys.auth import SYSTEM
from jobsys.context import Context
from jobsys.errors import ConfigError
from jobsys.oidc_roles import Granted, granted, parse_role_rules
from jobsys.store.models import User, WebSession
from tests.support.auth import csrf_of
from tests.support.fixtures import make_context, make_settings
from tests.support.oidc_provider import CLIENT_ID, CLIENT_SECRET, FAULTS, Provider, running_provider
from webui import create_app

PUBLIC_URL = "http://jobsys.test"
#: What Authlib (and joserfc) say about each fault: the check that caught it.
WHY = {
    "other_key": "bad_signature",
    "tampered": "bad_signature",
    "wrong_audience": "aud",
    "wrong_issuer": "iss",
    "expired": "expired",
    "no_nonce": "nonce",
}
ROLES = "data-eng=data:developer,ops=*:operator,platform=global:admin"


@pytest.fixture
def provider() -> Iterator[Provider]:
    with running_provider() as found:
        found.redirect_uris.add(f"{PUBLIC_URL}/login/oidc/callback")
        yield found


@pytest.fixture
def oidc_ctx(tmp_path: Path, provider: Provider) -> Context:
    settings = make_settings(
        tmp_path,
        oidc_issuer=provider.url,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
        oidc_name="Test IdP",
        oidc_roles=ROLES,
        public_url=PUBLIC_URL,
        redis_url="redis://127.0.0.1:9/0",  # nothing here needs Redis
    )
    ctx = make_context(settings)
    service.create_project(ctx, SYSTEM, "data")
    return ctx


@pytest.fixture
def client(oidc_ctx: Context) -> FlaskClient:
    return create_app(context=oidc_ctx).test_client()


def sign_in(
    client: FlaskClient, provider: Provider, account: str, *, state: str | None = None
) -> Any:
    """What a browser does: our app sends it to the provider, the provider's page
    posts back a choice, the provider sends it to our callback; the callback's answer."""
    start = client.get("/login/oidc?next=/jobs")
    assert start.status_code == 302, start.get_data(as_text=True)
    to_provider = start.headers["Location"]
    assert to_provider.startswith(f"{provider.url}/authorize?")
    params = dict(parse_qsl(urlsplit(to_provider).query))
    assert params["code_challenge_method"] == "S256" and params["nonce"] and params["state"]
    page = httpx.get(to_provider)
    assert page.status_code == 200 and "Test IdP sign-in" in page.text
    chosen = httpx.post(f"{provider.url}/authorize", data={**params, "account": account})
    assert chosen.status_code == 302, chosen.text
    back = urlsplit(chosen.headers["Location"])
    assert f"{back.scheme}://{back.netloc}" == PUBLIC_URL
    query = dict(parse_qsl(back.query))
    if state is not None:
        query["state"] = state
    return client.get(back.path, query_string=query)


def count(ctx: Context, model: Any) -> int:
    with ctx.sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_the_sign_in_page_offers_the_provider(client: FlaskClient) -> None:
    page = client.get("/login").get_data(as_text=True)
    assert "Sign in with Test IdP" in page and 'href="/login/oidc?next=' in page


def test_a_member_signs_in_and_gets_the_roles_of_their_groups(
    client: FlaskClient, oidc_ctx: Context, provider: Provider
) -> None:
    provider.add("dana", ["data-eng", "unrelated"])
    answer = sign_in(client, provider, "dana")
    assert answer.status_code == 302 and answer.headers["Location"] == "/jobs"
    page = client.get("/jobs")
    assert page.status_code == 200 and "dana (developer in data)" in page.get_data(as_text=True)
    (dana,) = [u for u in service.list_users(oidc_ctx, SYSTEM) if u.name == "dana"]
    assert (dana.role, dana.projects) == ("", {"data": "developer"})
    # Her session acts in data only: the submit form puts a job there, not in default.
    form = {"image": "jobsys/busybox:local", "command": "true"}
    csrf = csrf_of(client.get("/jobs/new").get_data(as_text=True))
    into_data = client.post("/jobs/new", data={**form, "project": "data", "csrf_token": csrf})
    assert into_data.status_code == 302
    elsewhere = client.post("/jobs/new", data={**form, "project": "default", "csrf_token": csrf})
    assert elsewhere.status_code == 404
    assert [j.project for j in service.list_jobs(oidc_ctx, SYSTEM).items] == ["data"]
    entries, _ = service.list_audit(oidc_ctx, SYSTEM, action="login")
    assert entries[0].actor == "dana" and entries[0].detail["via"] == "oidc"


def test_roles_follow_the_claim_at_every_sign_in(
    client: FlaskClient, oidc_ctx: Context, provider: Provider
) -> None:
    account = provider.add("omar", ["ops"])
    assert sign_in(client, provider, "omar").status_code == 302
    roles = {u.name: (u.role, u.projects) for u in service.list_users(oidc_ctx, SYSTEM)}
    assert roles["omar"] == ("", {"data": "operator", "default": "operator"})  # "*": every one
    account.groups = ["platform", "data-eng"]
    assert sign_in(client, provider, "omar").status_code == 302
    roles = {u.name: (u.role, u.projects) for u in service.list_users(oidc_ctx, SYSTEM)}
    assert roles["omar"] == ("admin", {"data": "developer"})  # the claim replaced them
    account.groups = []
    refused = sign_in(client, provider, "omar")
    assert refused.status_code == 403
    assert "none of your groups (none) gives a role" in refused.get_data(as_text=True)
    # The provider's subject is the identity: a new name at the provider is the same user.
    account.groups, account.name = ["ops"], "omar.renamed"
    assert sign_in(client, provider, "omar").status_code == 302
    assert [u.name for u in service.list_users(oidc_ctx, SYSTEM)] == ["omar"]


def test_a_user_whose_groups_map_to_nothing_is_refused_and_told_why(
    client: FlaskClient, oidc_ctx: Context, provider: Provider
) -> None:
    provider.add("nina", ["marketing"])
    refused = sign_in(client, provider, "nina")
    assert refused.status_code == 403
    text = refused.get_data(as_text=True)
    assert "none of your groups (marketing) gives a role in jobsys" in text
    assert "JOBSYS_OIDC_ROLES" in text
    assert count(oidc_ctx, User) == 0 and count(oidc_ctx, WebSession) == 0
    assert client.get("/jobs").status_code == 302  # still signed out: to the sign-in page


def test_a_local_users_name_is_not_taken_over(
    client: FlaskClient, oidc_ctx: Context, provider: Provider
) -> None:
    service.add_user(oidc_ctx, SYSTEM, name="olga", password="correct horse", role="viewer")
    provider.add("olga", ["platform"])  # would be a global admin
    refused = sign_in(client, provider, "olga")
    assert refused.status_code == 403 and "exists here already" in refused.get_data(as_text=True)
    (olga,) = service.list_users(oidc_ctx, SYSTEM)
    assert (olga.role, olga.projects) == ("", {"default": "viewer"})


@pytest.mark.parametrize("fault", FAULTS)
def test_a_bad_id_token_is_refused(
    client: FlaskClient, oidc_ctx: Context, provider: Provider, fault: str
) -> None:
    provider.add("eve", ["platform"])
    provider.fault = fault
    refused = sign_in(client, provider, "eve")
    assert refused.status_code == 403, fault
    text = refused.get_data(as_text=True)
    assert "could not be checked" in text and WHY[fault] in text, text
    assert count(oidc_ctx, User) == 0 and count(oidc_ctx, WebSession) == 0
    provider.fault = None  # the same account, an honest token: in
    assert sign_in(client, provider, "eve").status_code == 302


def test_a_callback_with_another_state_is_refused(
    client: FlaskClient, oidc_ctx: Context, provider: Provider
) -> None:
    provider.add("eve", ["platform"])
    refused = sign_in(client, provider, "eve", state="forged-state")
    assert refused.status_code == 403
    assert count(oidc_ctx, User) == 0 and count(oidc_ctx, WebSession) == 0
    # A callback nobody started (a code replayed into someone else's browser):
    fresh = create_app(context=oidc_ctx).test_client()
    assert fresh.get("/login/oidc/callback?code=x&state=y").status_code == 403


def test_the_provider_saw_pkce_and_the_client_secret(
    client: FlaskClient, provider: Provider
) -> None:
    """The token endpoint refuses a wrong verifier or secret (so a success above
    means both were sent and right); the refusal list stays empty on success."""
    provider.add("dana", ["data-eng"])
    assert sign_in(client, provider, "dana").status_code == 302
    assert provider.refusals == []
    wrong = httpx.post(
        f"{provider.url}/token",
        data={"grant_type": "authorization_code", "code": "x", "redirect_uri": "y"},
        auth=(CLIENT_ID, "not-the-secret"),
    )
    assert wrong.status_code == 401 and provider.refusals == ["wrong client id or secret"]


def test_without_an_issuer_there_is_no_button_and_no_route(ctx: Context) -> None:
    client = create_app(context=ctx).test_client()
    assert 'id="sign-in-oidc"' not in client.get("/login").get_data(as_text=True)
    assert client.get("/login/oidc").status_code == 404


def test_the_role_mapping_is_checked_at_start() -> None:
    rules = parse_role_rules(ROLES + ", ")
    assert [(r.group, r.project, r.role) for r in rules] == [
        ("data-eng", "data", "developer"), ("ops", "*", "operator"), ("platform", "global", "admin")
    ]  # fmt: skip
    for bad, words in (
        ("data-eng=data", "is not group=project:role"),
        ("x=data:emperor", "the role 'emperor'"),
        ("x=Data Team:viewer", "not a project name"),
    ):
        with pytest.raises(ConfigError, match=words):
            parse_role_rules(bad)
    assert granted(rules, ["ops", "data-eng"], ["data", "default"]) == Granted(
        "", {"data": "developer", "default": "operator"}
    )
    assert granted(rules, "platform", []) == Granted("admin", {})
    assert not granted(rules, {"not": "a list"}, ["data"])
    assert granted(rules, ["data-eng"], ["default"]) == Granted("", {})  # data does not exist
