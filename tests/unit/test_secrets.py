"""Named secrets (issue 17): set by admins, encrypted at rest, named by specs
under each secret's roles, never shown, masked in logs; and the keys of their own."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from sqlalchemy import func, select, text

from jobsys import SecretNotGiven, secret, service
from jobsys.auth import SYSTEM, Principal
from jobsys.catalog import TemplateError, parse_template
from jobsys.cli.main import main
from jobsys.context import Context
from jobsys.errors import NotFoundError, PermissionDenied, SecretUnavailable, SpecError
from jobsys.keys import new_fernet_key
from jobsys.service.progress import LogRecord
from jobsys.store.models import AuditEntry, Job, Secret
from tests.support.auth import bearer, csrf_of, signed_in
from tests.support.fixtures import make_context, make_settings
from tests.support.specs import docker_spec
from webui import create_app

VALUE = "sk_live_0123456789abcdef"
ADMIN = Principal("ada", "admin")
DEV = Principal("dev", "developer")
OPERATOR = Principal("opal", "operator")


def docker_using(name: str) -> dict[str, Any]:
    spec = docker_spec()
    spec["steps"][0]["env"] = {"PLAIN": "x", "API_TOKEN": {"secret": name}}
    return spec


def function_using(*names: str) -> dict[str, Any]:
    step = {"kind": "function", "function": "math:sqrt", "items": [1], "secrets": list(names)}
    return {"name": "f", "steps": [step]}


def count(ctx: Context, model: Any) -> int:
    with ctx.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def every_stored_text(ctx: Context) -> str:
    """Every row of every table, as text: where a leaked value would show."""
    with ctx.sessions() as session:
        names = [
            r[0] for r in session.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))
        ]
        return "\n".join(
            repr(tuple(row))
            for name in names
            for row in session.execute(text(f'SELECT * FROM "{name}"'))
        )


# -- managing them -----------------------------------------------------------


def test_an_admin_sets_changes_lists_and_deletes_a_secret(ctx: Context) -> None:
    stored, created = service.set_secret(ctx, ADMIN, "stripe", VALUE)
    assert created and stored.roles == ("developer", "admin") and stored.updated_by == "ada"
    changed, created = service.set_secret(ctx, ADMIN, "stripe", "another", roles=["admin"])
    assert not created and changed.roles == ("admin",)
    assert [s.to_dict()["name"] for s in service.list_secrets(ctx, ADMIN)] == ["stripe"]
    assert service.reveal_secrets(ctx, SYSTEM, ["stripe"]) == {"stripe": "another"}
    service.delete_secret(ctx, ADMIN, "stripe")
    assert service.list_secrets(ctx, ADMIN) == []
    with pytest.raises(NotFoundError, match="no secret named 'stripe'"):
        service.delete_secret(ctx, ADMIN, "stripe")
    with ctx.sessions() as session:
        audit = [(e.action, e.target, e.detail) for e in session.scalars(select(AuditEntry))]
    assert audit == [
        ("secret.add", "stripe", {"roles": ["developer", "admin"]}),
        ("secret.change", "stripe", {"roles": ["admin"]}),
        ("secret.delete", "stripe", None),
    ]


def test_values_are_encrypted_at_rest_with_the_secrets_key_alone(ctx: Context) -> None:
    service.set_secret(ctx, ADMIN, "stripe", VALUE)
    assert VALUE not in every_stored_text(ctx)
    with ctx.sessions() as session:
        token = session.scalar(select(Secret.value))
    assert token is not None
    assert Fernet(ctx.settings.secrets_key.encode()).decrypt(token.encode()).decode() == VALUE
    # The signing key and the session key are other keys: neither opens it.
    for other in (ctx.settings.secret_key, ctx.settings.session_key):
        assert other != ctx.settings.secrets_key


def test_a_worker_with_another_secrets_key_says_so(ctx: Context) -> None:
    service.set_secret(ctx, ADMIN, "stripe", VALUE)
    elsewhere = replace(ctx, settings=replace(ctx.settings, secrets_key=new_fernet_key()))
    with pytest.raises(SecretUnavailable, match="another JOBSYS_SECRETS_KEY"):
        service.reveal_secrets(elsewhere, SYSTEM, ["stripe"])


@pytest.mark.parametrize("who", [DEV, OPERATOR, Principal("eve", "viewer")])
def test_only_admins_manage_or_read_secrets(ctx: Context, who: Principal) -> None:
    service.set_secret(ctx, ADMIN, "stripe", VALUE)
    for attempt in (
        lambda: service.set_secret(ctx, who, "stripe", "mine"),
        lambda: service.list_secrets(ctx, who),
        lambda: service.delete_secret(ctx, who, "stripe"),
        lambda: service.reveal_secrets(ctx, who, ["stripe"]),
    ):
        with pytest.raises(PermissionDenied):
            attempt()
    assert service.reveal_secrets(ctx, SYSTEM, ["stripe"]) == {"stripe": VALUE}


@pytest.mark.parametrize(
    ("name", "value", "roles", "field"),
    [
        ("has space", VALUE, None, "name"),
        ("9lives", VALUE, None, "name"),
        ("JOBSYS_SECRET_KEY", VALUE, None, "name"),
        ("PATH", VALUE, None, "name"),
        ("ok", "", None, "value"),
        ("ok", "nul\x00inside", None, "value"),
        ("ok", "x" * (32 * 1024 + 1), None, "value"),
        ("ok", VALUE, ["root"], "roles"),
    ],
)
def test_bad_secrets_are_refused_naming_the_field_and_nothing_is_stored(
    ctx: Context, name: str, value: str, roles: list[str] | None, field: str
) -> None:
    with pytest.raises(SpecError) as refused:
        service.set_secret(ctx, ADMIN, name, value, roles=roles)
    assert list(refused.value.fields) == [field]
    assert count(ctx, Secret) == 0 and count(ctx, AuditEntry) == 0


# -- naming them in specs ------------------------------------------------------


def test_a_submitted_spec_names_a_secret_and_the_value_is_stored_nowhere(ctx: Context) -> None:
    service.set_secret(ctx, ADMIN, "stripe", VALUE)
    job = service.submit_job(ctx, DEV, docker_using("stripe"))
    assert job.spec["steps"][0]["env"]["API_TOKEN"] == {"secret": "stripe"}
    service.submit_job(ctx, DEV, function_using("stripe"))
    assert VALUE not in every_stored_text(ctx)
    # Nor in what the broker was handed: ids only.
    assert VALUE not in repr(ctx.dispatcher.published)  # type: ignore[attr-defined]
    with ctx.sessions() as session:
        used = [
            e.detail.get("secrets")
            for e in session.scalars(select(AuditEntry).where(AuditEntry.action == "job.submit"))
            if e.detail
        ]
    assert used == [["stripe"], ["stripe"]]


@pytest.mark.parametrize("spec", [docker_using("nope"), function_using("stripe", "nope")])
def test_an_unknown_secret_is_a_400_naming_field_and_secret_and_nothing_is_stored(
    ctx: Context, spec: dict[str, Any]
) -> None:
    service.set_secret(ctx, ADMIN, "stripe", VALUE)
    with pytest.raises(SpecError) as refused:
        service.submit_job(ctx, DEV, spec)
    ((field, message),) = refused.value.fields.items()
    assert field in ("steps[0].env.API_TOKEN", "steps[0].secrets")
    assert "'nope'" in message and "jobsys secrets set nope" in message
    assert count(ctx, Job) == 0


def test_a_secret_with_no_roles_is_for_templates_only(ctx: Context) -> None:
    stored, _ = service.set_secret(ctx, ADMIN, "vault", VALUE, roles=[])
    assert stored.roles == ()
    only_templates = (
        "may be named only by catalog templates; your role in project 'default' is 'admin'"
    )
    with pytest.raises(SpecError, match=only_templates):
        service.submit_job(ctx, ADMIN, docker_using("vault"))


def test_a_secret_the_role_may_not_use_is_refused(ctx: Context) -> None:
    service.set_secret(ctx, ADMIN, "payroll", VALUE, roles=["admin"])
    with pytest.raises(SpecError) as refused:
        service.submit_job(ctx, DEV, docker_using("payroll"))
    assert refused.value.fields == {
        "steps[0].env.API_TOKEN": "secret 'payroll' may be named only by the roles admin; "
        "your role in project 'default' is 'developer' (start a catalog template that uses it)"
    }
    assert count(ctx, Job) == 0
    assert service.submit_job(ctx, ADMIN, docker_using("payroll")).status == "queued"


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"secret": "a", "extra": 1}, 'name a secret as {"secret": "NAME"}'),
        ({"secret": "bad name"}, "a secret's name is"),
        ({"secret": 5}, "a secret's name is"),
    ],
)
def test_a_malformed_reference_is_refused(ctx: Context, env: Any, problem: str) -> None:
    spec = docker_spec()
    spec["steps"][0]["env"] = {"X": env}
    with pytest.raises(SpecError) as refused:
        service.submit_job(ctx, DEV, spec)
    assert problem in refused.value.fields["steps[0].env.X"]


def test_a_template_may_use_a_secret_its_starter_may_not_name(ctx: Context) -> None:
    service.set_secret(ctx, ADMIN, "payroll", VALUE, roles=["admin"])
    folder = Path(ctx.settings.data_dir) / "catalog" / "pay"
    folder.mkdir(parents=True)
    step = {**docker_spec()["steps"][0], "env": {"TOKEN": {"secret": "payroll"}}}
    (folder / "job.json").write_text(json.dumps({"name": "pay", "steps": [step]}))
    service.reload_catalog(ctx, SYSTEM, folder.parent)
    started = service.start_template(ctx, OPERATOR, "pay", {})
    assert started.spec["steps"][0]["env"]["TOKEN"] == {"secret": "payroll"}
    # A rerun of that job by the operator uses the vetted spec: it still works.
    assert service.rerun_job(ctx, OPERATOR, started.id).status == "queued"
    with ctx.sessions() as session:
        start = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "catalog.start")
        ).one()
    assert start.detail is not None and start.detail["secrets"] == ["payroll"]


@pytest.mark.parametrize(
    "step",
    [
        {
            "kind": "docker",
            "image": "busybox",
            "command": ["true"],
            "env": {"T": {"secret": "{{ s }}"}},
        },
        {"kind": "function", "function": "math:sqrt", "items": [1], "secrets": ["{{ s }}"]},
        {"kind": "function", "function": "math:sqrt", "items": [1], "secrets": "{{ s }}"},
    ],
)
def test_a_template_cannot_let_a_variable_choose_the_secret(step: dict[str, Any]) -> None:
    data = {"name": "t", "variables": {"s": {"type": "string"}}, "steps": [step]}
    with pytest.raises(TemplateError, match="placeholder"):
        parse_template(data, "t")


def test_a_secret_deleted_after_submit_fails_the_step_saying_so(ctx: Context) -> None:
    service.set_secret(ctx, ADMIN, "stripe", VALUE)
    service.submit_job(ctx, DEV, function_using("stripe"))
    service.delete_secret(ctx, ADMIN, "stripe")
    with pytest.raises(SecretUnavailable, match="'stripe', which was deleted"):
        service.reveal_secrets(ctx, SYSTEM, ["stripe"])


# -- masking -----------------------------------------------------------------


def test_the_redactor_masks_every_value_longest_first_and_lines_of_long_ones() -> None:
    pem = "-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\n-----END KEY-----"
    redact = service.Redactor(["abcd", "abcdef", pem])
    assert redact("token=abcdef and abcd.") == "token=*** and ***."
    assert redact("line MIIBOgIBAAJBAKj34GkxFhD9 seen") == "line *** seen"
    assert redact("-----") == "-----"  # too short a line to mean the key
    record = LogRecord(line="x abcd", stream="stdout")
    assert redact.log(record) == LogRecord(line="x ***", stream="stdout")
    nothing = service.Redactor([])
    assert not nothing and nothing.log(record) is record


def test_jobsys_secret_reads_the_steps_secret_or_says_how_to_ask(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("stripe", VALUE)
    assert secret("stripe") == VALUE
    with pytest.raises(SecretNotGiven, match='"secrets": \\["other"\\]'):
        secret("other")


# -- the doors ------------------------------------------------------------------


def test_the_api_sets_lists_and_deletes_and_never_answers_with_a_value(ctx: Context) -> None:
    client = create_app(context=ctx).test_client()
    admin = bearer(ctx, "admin")
    body = {"name": "stripe", "value": VALUE, "roles": ["admin"]}
    first = client.post("/api/secrets", json=body, headers=admin)
    again = client.post("/api/secrets", json={"name": "stripe", "value": "v2"}, headers=admin)
    listed = client.get("/api/secrets", headers=admin)
    assert (first.status_code, again.status_code, listed.status_code) == (201, 200, 200)
    assert again.get_json()["roles"] == ["admin"]  # kept when not given
    assert [s["name"] for s in listed.get_json()["secrets"]] == ["stripe"]
    for answer in (first, again, listed):
        assert VALUE not in answer.get_data(as_text=True) and "v2" not in answer.get_data(
            as_text=True
        )
    bad = client.post("/api/secrets", json={"name": "x", "value": VALUE, "extra": 1}, headers=admin)
    assert bad.status_code == 400
    dev = client.get("/api/secrets", headers=bearer(ctx, "developer"))
    assert dev.status_code == 403
    assert client.delete("/api/secrets/stripe", headers=admin).status_code == 204
    assert client.delete("/api/secrets/stripe", headers=admin).status_code == 404


def test_the_secrets_page_sets_and_deletes_and_never_shows_a_value(ctx: Context) -> None:
    page = signed_in(ctx, "admin")
    form = page.get("/secrets").get_data(as_text=True)
    answer = page.post(
        "/secrets",
        data={"csrf_token": csrf_of(form), "name": "stripe", "value": VALUE, "roles": ["admin"]},
    )
    assert answer.status_code == 302
    listed = page.get("/secrets").get_data(as_text=True)
    assert "<code>stripe</code>" in listed and VALUE not in listed
    assert service.list_secrets(ctx, ADMIN)[0].roles == ("admin",)
    refused = page.post(
        "/secrets", data={"csrf_token": csrf_of(listed), "name": "x y", "value": VALUE}
    )
    assert refused.status_code == 400 and VALUE not in refused.get_data(as_text=True)
    deleted = page.post("/secrets/stripe/delete", data={"csrf_token": csrf_of(listed)})
    assert deleted.status_code == 302 and service.list_secrets(ctx, ADMIN) == []


def test_the_submit_form_names_secrets_and_says_which_box_is_wrong(ctx: Context) -> None:
    service.set_secret(ctx, ADMIN, "stripe", VALUE)
    service.set_secret(ctx, ADMIN, "vault", "v-0123456789", roles=["admin"])
    page = signed_in(ctx, "developer")
    form = {
        "csrf_token": csrf_of(page.get("/jobs/new").get_data(as_text=True)),
        "name": "pay",
        "image": "jobsys/busybox:local",
        "command": "env",
        "env": "PLAIN=x",
    }

    def refused(**fields: str) -> str:
        answer = page.post("/jobs/new", data={**form, **fields})
        assert answer.status_code == 400, answer.status_code
        return answer.get_data(as_text=True)

    unknown = refused(secrets="API_TOKEN=nope")
    assert "no secret named &#39;nope&#39;" in unknown
    assert 'class="field invalid">\n    <label for="secrets">' in unknown  # under the box
    assert "is &#39;developer&#39; (start a catalog template" in refused(secrets="V=vault")
    assert "line 1: write NAME=secret" in refused(secrets="stripe")
    assert "PLAIN is in Environment too" in refused(secrets="PLAIN=stripe")
    assert count(ctx, Job) == 0

    answer = page.post("/jobs/new", data={**form, "secrets": "API_TOKEN=stripe\n"})
    assert answer.status_code == 302
    with ctx.sessions() as session:
        job = session.scalars(select(Job)).one()
        env = job.steps[0].spec["env"]
    assert env == {"PLAIN": "x", "API_TOKEN": {"secret": "stripe"}}
    assert VALUE not in every_stored_text(ctx)


def test_the_cli_reads_the_value_from_stdin_never_an_argument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path)
    for key, value in settings.to_env().items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    added = runner.invoke(
        main, ["secrets", "set", "stripe", "--roles", "admin"], input=VALUE + "\n"
    )
    assert added.exit_code == 0, added.output
    assert added.output == "added secret stripe in default (roles: admin)\n"
    as_argument = runner.invoke(main, ["secrets", "set", "stripe", VALUE])
    assert as_argument.exit_code == 2  # no such argument: values never go on a command line
    listed = runner.invoke(main, ["secrets", "list", "--json"])
    assert [s["name"] for s in json.loads(listed.output)] == [
        "stripe"
    ] and VALUE not in listed.output
    ctx = make_context(settings)
    assert service.reveal_secrets(ctx, SYSTEM, ["stripe"]) == {"stripe": VALUE}
    bad = runner.invoke(main, ["secrets", "set", "PATH"], input="x\n")
    assert bad.exit_code == 2 and "jobsys uses itself" in bad.output
    # The same name in another project is another secret, that project's jobs' only.
    service.create_project(ctx, SYSTEM, "data")
    other = runner.invoke(main, ["--project", "data", "secrets", "set", "stripe"], input="v2\n")
    assert other.output == "added secret stripe in data (roles: developer, admin)\n"
    assert service.reveal_secrets(ctx, SYSTEM, ["stripe"], project="data") == {"stripe": "v2"}
    assert service.reveal_secrets(ctx, SYSTEM, ["stripe"]) == {"stripe": VALUE}
    in_data = runner.invoke(main, ["secrets", "list", "--project", "data", "--json"])
    assert [(s["project"], s["name"]) for s in json.loads(in_data.output)] == [("data", "stripe")]
    assert runner.invoke(main, ["secrets", "delete", "stripe"]).exit_code == 0
    assert runner.invoke(main, ["secrets", "delete", "stripe"]).exit_code == 3
    gone = runner.invoke(main, ["secrets", "delete", "stripe", "--project", "data"])
    assert gone.output == "deleted secret stripe from data\n"
    key = runner.invoke(main, ["secrets", "new-key"]).output.strip()
    assert len(Fernet(key.encode()).encrypt(b"x")) > 0


# -- keys of their own -----------------------------------------------------------------


def test_each_key_is_its_own_file_and_the_session_key_signs_the_web_sessions(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, secret_key="")
    keys = {n: (tmp_path / n).read_text() for n in ("secret.key", "session.key", "secrets.key")}
    assert len(set(keys.values())) == 3
    assert (settings.secret_key, settings.session_key, settings.secrets_key) == (
        keys["secret.key"],
        keys["session.key"],
        keys["secrets.key"],
    )
    assert all((tmp_path / n).stat().st_mode & 0o777 == 0o600 for n in keys)
    assert create_app(context=make_context(settings)).secret_key == settings.session_key


def test_a_session_outlives_a_new_signing_key_but_not_a_new_session_key(ctx: Context) -> None:
    page = signed_in(ctx, "viewer")
    cookie = page.get_cookie("session")
    assert cookie is not None and page.get("/jobs").status_code == 200

    def opens(settings_change: dict[str, str]) -> int:
        other = replace(ctx, settings=replace(ctx.settings, **settings_change))
        client = create_app(context=other).test_client()
        client.set_cookie("session", cookie.value)
        return client.get("/jobs").status_code

    assert opens({"secret_key": "a-wholly-different-signing-key"}) == 200
    assert opens({"session_key": "a-wholly-different-session-key"}) == 302  # to sign-in


def test_a_schedule_fires_with_its_owners_secret_and_fails_once_the_role_is_gone(
    ctx: Context,
) -> None:
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    service.set_secret(ctx, ADMIN, "stripe", VALUE, roles=["admin"])
    body = {
        "name": "hourly",
        "interval_s": 3600,
        "overlap": "allow",
        "spec": docker_using("stripe"),
    }
    service.create_schedule(ctx, ADMIN, body, now=t0)
    (fired,) = service.fire_due_schedules(ctx, t0 + timedelta(hours=1))
    assert fired.outcome == "submitted"
    with ctx.sessions() as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "schedule.fire")
        ).one()
    assert entry.detail is not None and entry.detail["secrets"] == ["stripe"]
    assert entry.detail["job"] == fired.job_id
    # The secret's roles narrow: the next firing, as its owner would submit today, fails.
    service.set_secret(ctx, ADMIN, "stripe", VALUE, roles=["developer"])
    (refused_run,) = service.fire_due_schedules(ctx, t0 + timedelta(hours=2))
    assert refused_run.outcome == "failed"
    runs = service.schedule_runs(ctx, ADMIN, "hourly")
    assert "may be named only by the roles developer" in (runs[0].note or "")


def test_roles_must_be_a_list_at_every_door(ctx: Context) -> None:
    for shape in ("admin", {"admin": True}):
        with pytest.raises(SpecError) as refused:
            service.set_secret(ctx, ADMIN, "stripe", VALUE, roles=shape)  # type: ignore[arg-type]
        assert "give a list of roles" in refused.value.fields["roles"]
    client = create_app(context=ctx).test_client()
    body = {"name": "stripe", "value": VALUE, "roles": {"admin": True}}
    answer = client.post("/api/secrets", json=body, headers=bearer(ctx, "admin"))
    assert answer.status_code == 400 and "roles" in answer.get_json()["fields"]
    assert count(ctx, Secret) == 0
