"""Sign-in with the company's identity provider: OpenID Connect, the
authorization code flow with PKCE, run by Authlib's Flask client.

``/login/oidc`` sends the browser to the provider with a fresh state, nonce
and PKCE challenge (kept in the signed session cookie); ``/login/oidc/callback``
takes the answer, and Authlib checks the state, exchanges the code with the
verifier and the client secret, and checks the ID token: its signature against
the provider's published keys, its issuer, audience (our client id), expiry and
nonce. Only then does ``service.oidc_sign_in`` see the subject, the name and
the groups. Anything wrong is a sign-in page that says what, and no session.
"""

from __future__ import annotations

import logging
from typing import Any

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.flask_client import OAuth
from flask import Blueprint, Flask, current_app, redirect, render_template, request, session
from joserfc.errors import JoseError

from jobsys import service
from jobsys.config import Settings
from jobsys.errors import NotFoundError, SignInRefused
from jobsys.oidc_roles import parse_role_rules
from webui.principal import PUBLIC, SESSION_KEY, context, needs, source

log = logging.getLogger(__name__)

bp = Blueprint("oidc", __name__)

#: Where the page to go back to after sign-in waits while the browser is away.
NEXT_KEY = "oidc_next"
#: What the ID token must hold, whatever the provider's metadata says.
ESSENTIAL = ("iss", "sub", "aud", "exp", "iat")
#: Clock difference between us and the provider that an expiry may be off by.
LEEWAY_S = 60


def init_app(app: Flask, settings: Settings) -> None:
    """Register the provider when ``JOBSYS_OIDC_ISSUER`` is set; a mistake in the
    role mapping stops the app here, with the fix (ConfigError)."""
    app.register_blueprint(bp)
    if not settings.oidc_issuer:
        return
    parse_role_rules(settings.oidc_roles)
    oauth = OAuth(app)
    oauth.register(
        "provider",
        client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret,
        server_metadata_url=settings.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={"scope": settings.oidc_scope, "code_challenge_method": "S256"},
    )
    app.extensions["jobsys_oidc"] = oauth


def enabled() -> bool:
    return "jobsys_oidc" in current_app.extensions


def button_label() -> str | None:
    """The sign-in page's "Sign in with ..." text, or None without a provider."""
    return f"Sign in with {context().settings.oidc_name}" if enabled() else None


def _client() -> Any:
    if not enabled():
        raise NotFoundError("sign-in with an identity provider is not set up here")
    return current_app.extensions["jobsys_oidc"].provider


def public_url() -> str:
    settings = context().settings
    return (settings.public_url or f"http://{settings.web_host}:{settings.web_port}").rstrip("/")


@bp.get("/login/oidc")
@needs(PUBLIC)
def start() -> Any:
    """Off to the provider; ``next`` (a path on this site) is where the user lands after."""
    from webui.views import local_path

    client = _client()
    session[NEXT_KEY] = local_path(request.args.get("next")) or ""
    return client.authorize_redirect(redirect_uri=public_url() + "/login/oidc/callback")


@bp.get("/login/oidc/callback")
@needs(PUBLIC)
def callback() -> Any:
    client = _client()
    settings = context().settings
    if "error" in request.args:  # the provider said no (the user cancelled, say)
        return _refused(f"the identity provider refused: {request.args.get('error')}")
    try:
        token = client.authorize_access_token(
            claims_options={
                **{name: {"essential": True} for name in ESSENTIAL},
                "iss": {"essential": True, "value": settings.oidc_issuer.rstrip("/")},
                "aud": {"essential": True, "value": settings.oidc_client_id},
            },
            leeway=LEEWAY_S,
        )
    except (AuthlibBaseError, JoseError, ValueError, KeyError, requests.RequestException) as exc:
        log.warning("OpenID sign-in refused: %s: %s", type(exc).__name__, exc)
        return _refused(f"the sign-in could not be checked ({_why(exc)}); try again")
    claims = token.get("userinfo")
    if not claims:  # no ID token: an OAuth answer, not an OpenID Connect one
        return _refused("the identity provider sent no ID token; is it an OpenID Connect one?")
    name = str(claims.get("preferred_username") or claims.get("email") or claims.get("sub"))
    try:
        started = service.oidc_sign_in(
            context(),
            subject=f"{settings.oidc_issuer.rstrip('/')} {claims['sub']}",
            name=name,
            groups=claims.get(settings.oidc_claim, []),
            source=source(),
        )
    except SignInRefused as exc:
        return _refused(exc.message)
    back = session.pop(NEXT_KEY, "") or "/"
    session.clear()  # a new session (and CSRF token) for the signed-in user
    session.permanent = True
    session[SESSION_KEY] = started.reference
    return redirect(back)


def _why(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "…"


def _refused(message: str) -> tuple[str, int]:
    session.pop(NEXT_KEY, None)
    return render_template("login.html", error=message, oidc_refused=True), 403
