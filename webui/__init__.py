"""The jobsys web app: HTML pages and the JSON API over one service layer."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from jobsys.config import Settings
from jobsys.context import Context
from jobsys.errors import ConfigError


def create_app(settings: Settings | None = None, context: Context | None = None) -> Flask:
    """The app factory. Pass a Context to run over test collaborators."""
    from jobsys.runtime import build_context
    from webui import (
        admin_views,
        api,
        catalog_views,
        compression,
        errors,
        flower_proxy,
        headers,
        input_guard,
        metrics,
        oidc_views,
        schedule_views,
        views,
    )
    from webui.principal import SessionCookies

    if context is None:
        context = build_context(settings)
        _load_catalog(context)
    app = Flask(__name__)
    app.config.update(
        # Its own key (JOBSYS_SESSION_KEY), not one derived from the pickle-signing
        # key: whoever learns one of them cannot forge with the other.
        SECRET_KEY=context.settings.session_key,
        MAX_CONTENT_LENGTH=context.settings.max_payload_bytes,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # The cookie outlives the browser no longer than the session row it names.
        PERMANENT_SESSION_LIFETIME=timedelta(hours=context.settings.session_hours),
        JOBSYS_SECURE_COOKIES=_secure_cookies(context.settings.secure_cookies),
        WTF_CSRF_TIME_LIMIT=context.settings.csrf_time_limit_s or None,
    )
    app.session_interface = SessionCookies()
    if context.settings.trust_proxy:
        # One proxy hop: its X-Forwarded-For is the client's address (what sign-in
        # throttling counts) and X-Forwarded-Proto says whether it was https.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
    app.extensions["jobsys"] = context
    csrf = CSRFProtect(app)
    csrf.exempt(api.bp)  # the API authenticates with bearer tokens, not cookies
    # Flower's own pages post without our token; instead the proxy refuses a change
    # made with the session cookie unless the browser says it came from our origin
    # (flower_proxy.cross_site_problem), and each call still needs its right.
    csrf.exempt(flower_proxy.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(views.bp)
    app.register_blueprint(schedule_views.bp)
    app.register_blueprint(catalog_views.bp)
    app.register_blueprint(admin_views.bp)
    app.register_blueprint(flower_proxy.bp)
    app.register_blueprint(metrics.bp)
    oidc_views.init_app(app, context.settings)
    errors.init_app(app)
    input_guard.init_app(app)
    compression.init_app(app)
    headers.init_app(app)
    app.context_processor(views.project_switcher)
    app.context_processor(lambda: {"oidc_button": oidc_views.button_label()})
    app.jinja_env.filters["dt"] = _format_dt
    app.jinja_env.filters["eta"] = _format_eta
    return app


def _secure_cookies(mode: str) -> str:
    if mode not in ("auto", "always", "never"):
        raise ConfigError(
            f"JOBSYS_SECURE_COOKIES={mode!r}: use auto (Secure over https), always or never"
        )
    return mode


def _format_dt(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def _format_eta(seconds: float) -> str:
    """A rough time left, as people say it: the pace so far is only a guess."""
    if seconds < 60:
        return f"about {max(1, round(seconds))} s left"
    if seconds < 3600:
        return f"about {round(seconds / 60)} min left"
    return f"about {seconds / 3600:.1f} h left"


def _load_catalog(context: Context) -> None:
    """Templates are discovered when the web app starts (and on reload)."""
    import logging

    from jobsys import service
    from jobsys.auth import Principal

    found = service.reload_catalog(context, Principal("web start-up", "admin", "web"))
    log = logging.getLogger(__name__)
    for broken in found.broken:
        log.warning(
            "catalog template %s (%s) did not load: %s", broken.name, broken.source, broken.error
        )
    for template in found.templates:
        for warning in template.warnings:
            log.warning("catalog template %s (%s): %s", template.name, template.source, warning)
