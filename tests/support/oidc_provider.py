"""An OpenID Connect provider the tests run themselves on loopback: discovery,
JWKS, a sign-in page, the authorization endpoint and the token endpoint, with
PKCE (S256) and client secrets checked as a real provider checks them.

ID tokens are RS256 JWTs made with joserfc (Authlib's JOSE library). ``fault``
makes the next ones wrong in one way each, as an attacker or a broken provider
would send them: signed by another key, altered after signing, for another
audience, from another issuer, expired, or without the nonce.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

CLIENT_ID = "jobsys-test"
CLIENT_SECRET = "a-client-secret-for-the-tests"
FAULTS = ("other_key", "tampered", "wrong_audience", "wrong_issuer", "expired", "no_nonce")


@dataclass
class Account:
    sub: str
    name: str
    groups: list[str]


@dataclass
class Provider:
    url: str = ""
    accounts: dict[str, Account] = field(default_factory=dict)
    #: One of FAULTS for the ID tokens it issues next, or None.
    fault: str | None = None
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, {"kid": "test-1"}))
    other: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, {"kid": "test-1"}))
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: What the token endpoint refused, and why (the tests read it).
    refusals: list[str] = field(default_factory=list)
    redirect_uris: set[str] = field(default_factory=set)

    def add(self, name: str, groups: list[str], sub: str | None = None) -> Account:
        account = Account(sub or f"sub-{name}", name, groups)
        self.accounts[name] = account
        return account

    # -- the endpoints --------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        routes = {
            "/.well-known/openid-configuration": self.discovery,
            "/jwks": self.jwks,
            "/authorize": self.authorize,
            "/token": self.token,
        }
        handler = routes.get(request.path)
        response = handler(request) if handler else Response("not found", 404)
        return response(environ, start_response)

    def discovery(self, request: Request) -> Response:
        return _json(
            {
                "issuer": self.url,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "jwks_uri": f"{self.url}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
            }
        )

    def jwks(self, request: Request) -> Response:
        return _json(KeySet([self.key]).as_dict(private=False))

    def authorize(self, request: Request) -> Response:
        """GET: the sign-in page (pick an account); POST: the code, back to the client."""
        args = request.args if request.method == "GET" else request.form
        problem = self._authorize_problem(args)
        if problem:
            return Response(problem, 400)
        if request.method == "GET":
            hidden = "".join(
                f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
                for k, v in args.items()
            )
            options = "".join(f"<option>{escape(n)}</option>" for n in self.accounts)
            page = (
                "<!doctype html><title>Test IdP</title><h1>Test IdP sign-in</h1>"
                f'<form method="post" action="/authorize">{hidden}'
                f'<label for="account">Account</label><select id="account" name="account">'
                f"{options}</select><button type=submit>Continue</button></form>"
            )
            return Response(page, 200, content_type="text/html")
        account = self.accounts.get(args.get("account", ""))
        if account is None:
            return Response("no such account", 400)
        code = secrets.token_urlsafe(24)
        self.codes[code] = {
            "account": account,
            "redirect_uri": args["redirect_uri"],
            "challenge": args["code_challenge"],
            "nonce": args.get("nonce"),
            "at": time.time(),
        }
        back = {"code": code, "state": args.get("state", "")}
        return Response(
            status=302, headers={"Location": f"{args['redirect_uri']}?{urlencode(back)}"}
        )

    def _authorize_problem(self, args: Any) -> str | None:
        if args.get("client_id") != CLIENT_ID:
            return "unknown client"
        if self.redirect_uris and args.get("redirect_uri") not in self.redirect_uris:
            return f"redirect_uri {args.get('redirect_uri')!r} is not registered"
        if args.get("response_type") != "code" or "openid" not in args.get("scope", "").split():
            return "only the authorization code flow with the openid scope"
        if args.get("code_challenge_method") != "S256" or not args.get("code_challenge"):
            return "PKCE with S256 is required"
        return None

    def token(self, request: Request) -> Response:
        form = request.form
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if request.authorization is not None:
            client_id = request.authorization.username
            client_secret = request.authorization.password
        if client_id != CLIENT_ID or client_secret != CLIENT_SECRET:
            return self._refuse("invalid_client", "wrong client id or secret", 401)
        grant = self.codes.pop(form.get("code", ""), None)
        if form.get("grant_type") != "authorization_code" or grant is None:
            return self._refuse("invalid_grant", "unknown or used code")
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return self._refuse("invalid_grant", "redirect_uri differs from the authorize one")
        verifier = form.get("code_verifier", "")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        if digest.rstrip(b"=").decode() != grant["challenge"]:
            return self._refuse("invalid_grant", "the PKCE verifier does not match")
        return _json(
            {
                "access_token": secrets.token_urlsafe(24),
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": self.id_token(grant["account"], grant["nonce"]),
            }
        )

    def id_token(self, account: Account, nonce: str | None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "sub": account.sub,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "preferred_username": account.name,
            "groups": account.groups,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        fault = self.fault
        if fault == "wrong_audience":
            claims["aud"] = "another-client"
        elif fault == "wrong_issuer":
            claims["iss"] = "http://127.0.0.1:1/evil"
        elif fault == "expired":
            claims["iat"], claims["exp"] = now - 3600, now - 600
        elif fault == "no_nonce":
            claims.pop("nonce", None)
        key = self.other if fault == "other_key" else self.key
        token = jwt.encode({"alg": "RS256", "kid": "test-1"}, claims, key)
        if fault == "tampered":  # claims changed after signing: admin, please
            header, body, signature = token.split(".")
            padded = body + "=" * (-len(body) % 4)
            raw = base64.urlsafe_b64decode(padded).replace(b'"groups":[', b'"groups":["admins",')
            body = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
            token = f"{header}.{body}.{signature}"
        return token

    def _refuse(self, error: str, why: str, status: int = 400) -> Response:
        self.refusals.append(why)
        return _json({"error": error, "error_description": why}, status)


def _json(data: Any, status: int = 200) -> Response:
    import json

    return Response(json.dumps(data), status, content_type="application/json")


@contextmanager
def running_provider() -> Iterator[Provider]:
    """A provider on a free loopback port, for as long as the block runs."""
    provider = Provider()
    server = make_server("127.0.0.1", 0, provider, threaded=True)
    provider.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
