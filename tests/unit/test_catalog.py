"""Catalog templates: loading (broken ones reported, the rest kept), variables
checked before substitution, safe rendering, and rights per template."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from jobsys import service
from jobsys.auth import SYSTEM, Principal
from jobsys.catalog import load_folder, parse_template
from jobsys.context import Context
from jobsys.errors import NotFoundError, PermissionDenied, SpecError
from tests.support.auth import bearer, csrf_of, new_token, sign_in, signed_in
from webui import create_app

EXAMPLES = Path(__file__).parents[2] / "jobs"
ADMIN = Principal("ada", "admin")
OPERATOR = Principal("otto", "operator")


@pytest.fixture
def loaded(ctx: Context) -> Context:
    found = service.reload_catalog(ctx, ADMIN, EXAMPLES)
    assert {t.name for t in found.templates} == {"echo", "pipeline", "squares"}
    return ctx


def write(folder: Path, name: str, text: str, file: str = "job.yaml") -> None:
    (folder / name).mkdir(parents=True)
    (folder / name / file).write_text(text)


def test_a_broken_template_is_reported_and_the_others_load(tmp_path: Path) -> None:
    write(tmp_path, "good", "steps: [{kind: docker, image: jobsys/busybox:local, command: [true]}]")
    write(tmp_path, "bad-yaml", "steps: [unclosed")
    write(tmp_path, "bad-var", "steps: [{kind: docker, image: x, command: ['{{nope}}']}]")
    write(tmp_path, "sneaky", "variables: {k: {}}\nsteps: [{kind: '{{k}}', image: x}]")
    write(tmp_path, "code", "variables: {f: {}}\nsteps: [{kind: function, function: '{{f}}'}]")
    write(tmp_path, "json", json.dumps({"steps": [{"kind": "docker"}]}), "job.json")
    templates, broken = load_folder(tmp_path)
    assert [t.name for t in templates] == ["good", "json"]
    errors = {b.name: b.error for b in broken}
    assert "cannot parse" in errors["bad-yaml"]
    assert "undeclared variables: nope" in errors["bad-var"]
    assert "steps[0].kind may not hold a placeholder" in errors["sneaky"]
    assert "steps[0].function may not hold a placeholder" in errors["code"]
    assert all(b.source.endswith("job.yaml") for b in broken)


def test_a_projects_folder_holds_its_templates_and_the_flat_layout_is_default(
    ctx: Context, tmp_path: Path
) -> None:
    """``jobs/<template>/job.yaml`` is the default project's, ``jobs/<project>/<template>/``
    that project's; the same name in two projects is two templates, each starting
    jobs in its own project, and a folder for a project nobody added is reported."""
    ok = "steps: [{kind: docker, image: jobsys/busybox:local, command: ['true']}]"
    write(tmp_path, "nightly", ok)
    write(tmp_path, "data/nightly", ok)
    write(tmp_path, "data/load", ok)
    write(tmp_path, "ghost/thing", ok)
    write(tmp_path, "Not A Project/x", ok)  # neither a template nor a project's folder
    templates, broken = load_folder(tmp_path)
    assert sorted((t.project, t.name) for t in templates) == [
        ("data", "load"), ("data", "nightly"), ("default", "nightly"), ("ghost", "thing")
    ]  # fmt: skip
    assert broken == []
    service.create_project(ctx, ADMIN, "data")
    loaded = service.reload_catalog(ctx, ADMIN, tmp_path)
    assert sorted((t.project, t.name) for t in loaded.templates) == [
        ("data", "load"), ("data", "nightly"), ("default", "nightly")
    ]  # fmt: skip
    assert [(b.project, b.name) for b in loaded.broken] == [("ghost", "thing")]
    assert "no project named 'ghost'" in loaded.broken[0].error
    in_data = service.start_template(ctx, ADMIN, "nightly", {}, project="data")
    in_default = service.start_template(ctx, ADMIN, "nightly", {})
    assert (in_data.project, in_default.project) == ("data", "default")
    member = Principal("dora", projects=(("data", "operator"),))
    # Their only project is the default for names: "load" is found in data.
    assert service.start_template(ctx, member, "load", {}).project == "data"
    with pytest.raises(NotFoundError, match="no template 'nightly' in project 'default'"):
        service.start_template(ctx, member, "nightly", {}, project="default")
    assert [t.name for t in service.list_catalog(ctx, member).templates] == ["load", "nightly"]
    service.create_project(ctx, ADMIN, "ml")
    two = Principal("tess", projects=(("data", "operator"), ("ml", "viewer")))
    with pytest.raises(SpecError, match=r"name the project .*you have data, ml"):
        service.get_template(ctx, two, "load")
    assert service.get_template(ctx, two, "load", project="data").project == "data"

    # The Catalog page links each template in its own project, and its start form starts it there.
    client = sign_in(
        create_app(context=ctx).test_client(), new_token(ctx, "admin", everywhere=True)
    )
    listing = client.get("/catalog").get_data(as_text=True)
    assert 'href="/catalog/nightly?project=data"' in listing
    assert 'href="/catalog/nightly?project=default"' in listing
    page = client.get("/catalog/nightly?project=data").get_data(as_text=True)
    assert 'action="/catalog/nightly?project=data"' in page
    started = client.post("/catalog/nightly?project=data", data={"csrf_token": csrf_of(page)})
    job_id = started.headers["Location"].rsplit("/", 1)[1]
    assert service.get_job(ctx, ADMIN, job_id).project == "data"


TEMPLATE = {
    "variables": {
        "n": {"type": "int", "min": 1, "max": 10, "default": 2},
        "ratio": {"type": "float"},
        "loud": {"type": "bool", "default": False},
        "mode": {"type": "choice", "choices": ["a", "b"], "default": "a"},
        "word": {"type": "string", "pattern": "[a-z]+", "required": True},
    },
    "steps": [
        {
            "kind": "docker",
            "image": "jobsys/busybox:local",
            "command": ["echo", "{{word}} x{{n}} {{mode}} {{loud}}"],
            "timeout_s": "{{ratio}}",
        }
    ],
}


def test_variables_are_checked_and_typed_before_substitution() -> None:
    template = parse_template(TEMPLATE, "t")
    with pytest.raises(SpecError) as caught:
        template.render({"n": "11", "ratio": "x", "mode": "c", "word": "Hi", "extra": 1})
    assert set(caught.value.fields) == {"n", "ratio", "mode", "word", "extra"}
    assert "at most 10" in caught.value.fields["n"]
    assert "pattern" in caught.value.fields["word"]
    with pytest.raises(SpecError) as caught:
        template.render({"ratio": 1})
    assert "required" in caught.value.fields["word"]
    spec = template.render({"n": "3", "ratio": "2.5", "loud": "yes", "word": "hi"})
    assert spec["steps"][0]["command"] == ["echo", "hi x3 a true"]
    assert spec["steps"][0]["timeout_s"] == 2.5  # a whole placeholder keeps its type


def test_a_value_cannot_add_steps_or_fields() -> None:
    template = parse_template(
        {"variables": {"w": {}}, "steps": [{"kind": "docker", "image": "i", "command": ["{{w}}"]}]},
        "t",
    )
    evil = '"], "privileged": true}, {"kind": "docker", "image": "evil", "command": ["sh'
    spec = template.render({"w": evil})
    assert len(spec["steps"]) == 1 and set(spec["steps"][0]) == {"kind", "image", "command"}
    assert spec["steps"][0]["command"] == [evil]


def test_start_by_an_operator_and_narrowed_roles(loaded: Context) -> None:
    job = service.start_template(loaded, OPERATOR, "echo", {"message": "hi", "times": "2"})
    assert job.owner == "otto"
    assert job.spec["steps"][0]["command"][2].startswith("for i in $(seq 1 2)")
    with pytest.raises(PermissionDenied):
        service.start_template(loaded, Principal("v", "viewer"), "echo", {})
    with pytest.raises(PermissionDenied):  # operators may not submit arbitrary specs
        service.submit_job(loaded, OPERATOR, {"name": "x", "steps": job.spec["steps"]})
    with pytest.raises(SpecError) as caught:
        service.start_template(loaded, OPERATOR, "pipeline", {})
    assert "variables.dataset" in caught.value.fields
    piped = service.start_template(loaded, OPERATOR, "pipeline", {"dataset": "sales"})
    service.cancel_job(loaded, OPERATOR, piped.id)  # stop is open to operators
    with pytest.raises(PermissionDenied, match="only the roles developer, admin restart"):
        service.rerun_job(loaded, OPERATOR, piped.id)
    again = service.rerun_job(loaded, Principal("dev", "developer"), piped.id)
    assert again.rerun_of == piped.id
    squares = service.render_template(loaded, OPERATOR, "squares", {"count": 5})
    assert squares["steps"][0]["items"] == [0, 1, 2, 3, 4]


def test_catalog_api_and_start_form(loaded: Context) -> None:
    client: FlaskClient = create_app(context=loaded).test_client()
    operator = bearer(loaded, "operator")
    listed = client.get("/api/catalog", headers=operator).json
    assert [t["name"] for t in listed["templates"]] == ["echo", "pipeline", "squares"]
    r = client.post("/api/catalog/echo/start", json={"variables": {"times": 0}}, headers=operator)
    assert r.status_code == 400 and "variables.times" in r.json["fields"]
    r = client.post("/api/catalog/echo/start", json={"variables": {"times": 2}}, headers=operator)
    assert r.status_code == 202 and r.json["status"] == "queued"
    assert client.post("/api/catalog/nope/start", json={}, headers=operator).status_code == 404
    assert client.post("/api/catalog/reload", headers=operator).status_code == 403
    assert client.post("/api/catalog/reload", headers=bearer(loaded, "admin")).status_code == 200


def test_start_form_page(loaded: Context) -> None:
    client = signed_in(loaded, "operator")
    page = client.get("/catalog/squares").get_data(as_text=True)
    assert 'type="number" step="1"' in page and 'type="checkbox"' in page
    bad = client.post("/catalog/squares", data={"count": "0", "csrf_token": csrf_of(page)})
    assert bad.status_code == 400 and "at least 1" in bad.get_data(as_text=True)
    ok = client.post("/catalog/squares", data={"count": "7", "csrf_token": csrf_of(page)})
    assert ok.status_code == 302 and "/jobs/" in ok.headers["Location"]
    detail = client.get(ok.headers["Location"]).get_data(as_text=True)
    assert "math:sqrt over 7 items" in detail
    listing = client.get("/catalog").get_data(as_text=True)
    assert "Start…" in listing and "Reload the catalog folder" not in listing


def test_a_schedule_can_start_a_template(loaded: Context) -> None:
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    body = {"name": "nightly-squares", "interval_s": 60, "template": "squares"}
    with pytest.raises(SpecError) as caught:
        service.create_schedule(loaded, ADMIN, {**body, "variables": {"count": -1}}, now=t0)
    assert "variables.count" in caught.value.fields
    with pytest.raises(SpecError) as caught:
        service.create_schedule(loaded, ADMIN, {**body, "template": "nope"}, now=t0)
    assert "template" in caught.value.fields
    created = service.create_schedule(loaded, ADMIN, {**body, "variables": {"count": 3}}, now=t0)
    assert created.spec is None and created.variables == {"count": 3}
    (fired,) = service.fire_due_schedules(loaded, t0 + timedelta(seconds=60))
    job = service.get_job(loaded, ADMIN, fired.job_id or "")
    assert job.steps[0].total_items == 3 and job.owner == "ada"


def test_schedule_a_template_on_its_default_line(loaded: Context) -> None:
    client = signed_in(loaded, "admin")
    page = client.get("/catalog/squares").get_data(as_text=True)
    assert "Schedule it" in page
    r = client.post("/catalog/squares/schedule", data={"csrf_token": csrf_of(page)})
    assert r.status_code == 302
    made = service.get_schedule(loaded, SYSTEM, "squares")
    assert (made.cron, made.template) == ("0 3 * * *", "squares")
    assert (
        client.post("/catalog/echo/schedule", data={"csrf_token": csrf_of(page)}).status_code == 400
    )


HOSTILE = "'; touch {folder}/pwned; '"


def shell_template(script: str, **variable: object) -> dict[str, object]:
    return {
        "variables": {"message": variable or {}},
        "steps": [{"kind": "docker", "image": "i", "command": ["sh", "-c", script]}],
    }


def test_the_shell_filter_quotes_a_hostile_value_as_one_word(tmp_path: Path) -> None:
    """Run by a real ``sh``: the value is printed, not run."""
    import shlex
    import subprocess

    hostile = HOSTILE.format(folder=tmp_path)
    template = parse_template(shell_template("echo {{ message | shell }}"), "t")
    assert template.warnings == ()
    script = template.render({"message": hostile})["steps"][0]["command"][2]
    assert shlex.split(script) == ["echo", hostile]
    ran = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    assert ran.stdout == hostile + "\n"
    assert not (tmp_path / "pwned").exists()
    # without the filter the same value runs as shell code: what the filter is for
    bare = parse_template(shell_template("echo '{{message}}'"), "t")
    unsafe = bare.render({"message": hostile})["steps"][0]["command"][2]
    subprocess.run(["sh", "-c", unsafe], capture_output=True, check=False)
    assert (tmp_path / "pwned").exists()


def test_a_whole_string_placeholder_with_the_filter_is_quoted_text() -> None:
    data = {
        "variables": {"n": {"type": "int"}},
        "steps": [{"kind": "docker", "image": "i", "command": ["{{ n | shell }}", "{{n}}"]}],
    }
    assert parse_template(data, "t").render({"n": 3})["steps"][0]["command"] == ["3", 3]


def test_load_warns_about_placeholders_a_shell_would_parse(tmp_path: Path) -> None:
    def warnings(script: object, **variable: object) -> tuple[str, ...]:
        data = shell_template("", **variable)
        data["steps"][0]["command"] = script  # type: ignore[index]
        return parse_template(data, "t").warnings

    assert "without '| shell'" in warnings(["sh", "-c", 'echo "{{message}}"'])[0]
    assert "without '| shell'" in warnings(["/bin/bash", "-ec", "echo {{message}}"])[0]
    assert "changes its arguments" in warnings("echo {{message}}")[0]  # one string: split
    assert "inside quotes" in warnings(["sh", "-c", "echo '{{ message | shell }}'"])[0]
    assert warnings(["sh", "-c", "echo {{ message | shell }}"]) == ()
    assert warnings(["echo", "{{message}}"]) == ()  # no shell: one argument, whatever it holds
    assert warnings(["sh", "-c", "sleep {{message}}"], type="int") == ()
    assert warnings(["sh", "-c", "echo {{message}}"], type="choice", choices=["a", "b"]) == ()
    assert warnings(["sh", "-c", "{{message}}"], type="choice", choices=["a;b"]) != ()
    with pytest.raises(Exception, match="unknown filter 'upper'; the filters are shell"):
        parse_template(shell_template("echo {{ message | upper }}"), "t")


def test_the_shipped_templates_quote_their_values() -> None:
    templates, broken = load_folder(EXAMPLES)
    assert broken == [] and [t.warnings for t in templates] == [(), (), ()]
    echo = next(t for t in templates if t.name == "echo")
    assert "{{ message | shell }}" in json.dumps(echo.steps)


def test_warnings_on_the_catalog_page_in_the_api_and_from_catalog_test(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from jobsys.cli.main import main

    write(tmp_path, "risky", json.dumps(shell_template("echo {{message}}")), "job.json")
    service.reload_catalog(ctx, ADMIN, tmp_path)
    page = signed_in(ctx, "viewer").get("/catalog").get_data(as_text=True)
    assert "Warnings" in page and "{{message}} is inside a shell command" in page
    listed = create_app(context=ctx).test_client().get("/api/catalog", headers=bearer(ctx))
    assert "without '| shell'" in listed.json["templates"][0]["warnings"][0]
    monkeypatch.setenv("JOBSYS_DATA_DIR", str(tmp_path / "data"))
    ran = CliRunner().invoke(
        main, ["catalog", "test", "risky", "--folder", str(tmp_path), "--var", "message=hi"]
    )
    assert ran.exit_code == 0, ran.output
    assert "warning: steps[0].command[2]: {{message}} is inside a shell command" in ran.stderr
    assert json.loads(ran.stdout)["steps"][0]["command"] == ["sh", "-c", "echo hi"]


def test_the_web_app_logs_load_warnings_at_start(
    ctx: Context, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An operator who never opens the Catalog page sees them in the web log."""
    import webui

    write(tmp_path, "risky", json.dumps(shell_template("echo {{message}}")), "job.json")
    at_start = replace(ctx, settings=replace(ctx.settings, catalog_dir=str(tmp_path)))
    with caplog.at_level("WARNING", logger="webui"):
        webui._load_catalog(at_start)
    assert any(
        "catalog template risky" in r.message
        and "{{message}} is inside a shell command" in r.message
        for r in caplog.records
    ), caplog.text
