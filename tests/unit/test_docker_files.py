"""The operator's docker/ files: the compose file parses and wires what the service needs,
and the images are built from the same steps the sandbox runs (Docker itself is not
available on this machine kind)."""

from __future__ import annotations

import glob
import inspect
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from hitcall_pbx.sandbox.asterisk import Sandbox
from hitcall_pbx.settings import AGI_SECRET_RE, SANDBOX_AGI_SECRET, Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_compose_has_the_three_services_with_healthchecks(compose):
    services = compose["services"]
    assert set(services) == {"asterisk", "postgres", "hitcall"}
    for name, svc in services.items():
        assert svc["healthcheck"]["test"], name
    assert services["asterisk"]["healthcheck"]["test"] == ["CMD", "asterisk", "-rx", "core show uptime"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "/healthz" in " ".join(services["hitcall"]["healthcheck"]["test"])
    deps = services["hitcall"]["depends_on"]
    assert deps["postgres"]["condition"] == deps["asterisk"]["condition"] == "service_healthy"


def test_volumes_keep_the_database_and_the_recordings(compose):
    named = set(compose["volumes"])
    mounts = {
        name: {v.split(":")[1]: v.split(":")[0] for v in svc.get("volumes", [])}
        for name, svc in compose["services"].items()
    }
    assert mounts["postgres"]["/var/lib/postgresql/data"] in named
    env = compose["services"]["hitcall"]["environment"]
    data_dir = env["HITCALL_DATA_DIR"]
    # The service stores recordings under <data dir>/recordings (app.py: RecordingStore).
    assert mounts["hitcall"][f"{data_dir}/recordings"] in named
    assert mounts["hitcall"][data_dir] in named
    for svc in mounts.values():
        assert set(svc.values()) <= named, "only named volumes, no host paths"


def test_service_environment_is_what_settings_read(compose):
    env = compose["services"]["hitcall"]["environment"]
    read = {f.validation_alias.choices[0] for f in Settings.model_fields.values()}  # type: ignore[union-attr]  # every Settings field has an AliasChoices validation alias
    assert set(env) <= read, set(env) - read
    assert {"DATABASE_URL", "HITCALL_ARI_URL", "HITCALL_ARI_PASSWORD", "HITCALL_DATA_DIR"} <= set(env)
    # The service runs as its own role; migrations as the schema owner (docker/postgres creates both).
    assert env["DATABASE_URL"] == "postgresql://hitcall_service:${HITCALL_DB_PASSWORD}@127.0.0.1:5432/hitcall"
    assert env["HITCALL_MIGRATE_DATABASE_URL"] == (
        "postgresql://hitcall_owner:${HITCALL_DB_OWNER_PASSWORD}@127.0.0.1:5432/hitcall"
    )
    pg = compose["services"]["postgres"]
    assert pg["build"]["dockerfile"] == "docker/postgres/Dockerfile"
    assert pg["environment"]["POSTGRES_USER"] == "postgres" and pg["environment"]["POSTGRES_DB"] == "hitcall"
    for name in ("HITCALL_DB_PASSWORD", "HITCALL_DB_OWNER_PASSWORD"):
        assert pg["environment"][name].startswith("${" + name + ":?")
    # ARI on the port http.conf binds, FastAGI on the port the dialplan calls.
    assert ":8088/" in env["HITCALL_ARI_URL"] and "bindport = 8088" in (ROOT / "dialplan/http.conf").read_text()
    assert "HITCALL_AGI = agi://127.0.0.1:4573" in (ROOT / "dialplan/extensions.conf").read_text()
    assert env["HITCALL_AGI_PORT"] == "4573" and env["HITCALL_AGI_HOST"] == "127.0.0.1"
    # Asterisk and the service get the same FastAGI secret.
    assert env["HITCALL_AGI_SECRET"] == "${HITCALL_AGI_SECRET}"
    assert compose["services"]["asterisk"]["environment"]["HITCALL_AGI_SECRET"].startswith("${HITCALL_AGI_SECRET")
    assert compose["services"]["asterisk"]["environment"]["HITCALL_ARI_PASSWORD"].startswith("${HITCALL_ARI_PASSWORD")


def test_asterisk_image_runs_the_sandbox_install_script():
    steps = _instructions(DOCKER / "asterisk/Dockerfile")
    assert steps[0] == ("FROM", "debian:sid-slim")
    copies = {shlex.split(a)[-1]: shlex.split(a)[:-1] for i, a in steps if i == "COPY"}
    script = "docker/asterisk/install-packages.sh"
    assert copies["/tmp/install-packages.sh"] == [script]
    runs = [a for i, a in steps if i == "RUN"]
    assert any(r.startswith("sh /tmp/install-packages.sh") for r in runs)
    # The sandbox builds its chroot with the very same file.
    assert f'"{script}"' in inspect.getsource(Sandbox.build)
    assert copies["/etc/asterisk/"] == ["dialplan/*.conf"]
    assert (
        "HEALTHCHECK",
        "--interval=15s --timeout=5s --start-period=20s --retries=3 CMD asterisk -rx 'core show uptime' || exit 1",
    ) in [(i, re.sub(r"\s+", " ", a)) for i, a in steps]


def test_install_script_installs_asterisk_and_sipp():
    text = (DOCKER / "asterisk/install-packages.sh").read_text()
    for pkg in ("asterisk", "asterisk-modules", "asterisk-core-sounds-en-gsm", "sip-tester"):
        assert re.search(rf"\s{re.escape(pkg)}(\s|$)", text), pkg


def test_hitcall_image_installs_the_package_and_serves():
    steps = _instructions(DOCKER / "hitcall/Dockerfile")
    assert steps[0] == ("FROM", "python:3.11-slim")
    runs = " ".join(a for i, a in steps if i == "RUN")
    assert "pip install --no-cache-dir -e ." in runs
    assert ("CMD", '["hitcall", "serve"]') in steps
    health = next(a for i, a in steps if i == "HEALTHCHECK")
    assert "/healthz" in health
    workdir = next(a for i, a in steps if i == "WORKDIR")
    copied = {shlex.split(a)[-1] for i, a in steps if i == "COPY"}
    # The migrations runner looks for migrations/ next to the package directory.
    assert {"./hitcall_pbx", "./migrations"} <= copied and workdir == "/opt/hitcall"


@pytest.mark.parametrize("dockerfile", ["asterisk/Dockerfile", "hitcall/Dockerfile", "postgres/Dockerfile"])
def test_every_copied_path_exists(dockerfile):
    for instr, args in _instructions(DOCKER / dockerfile):
        if instr != "COPY":
            continue
        sources = [a for a in shlex.split(args)[:-1] if not a.startswith("--")]
        for src in sources:
            assert glob.glob(str(ROOT / src)), f"{dockerfile}: COPY {src} matches nothing"


def test_compose_builds_from_the_repository_root(compose):
    for name in ("asterisk", "hitcall"):
        build = compose["services"][name]["build"]
        assert (DOCKER / build["context"]).resolve() == ROOT
        assert (ROOT / build["dockerfile"]).is_file()


def _entrypoint(tmp_path: Path) -> tuple[str, Path, Path]:
    """The entrypoint script writing into copies of dialplan/ari.conf and extensions.conf."""
    conf, extensions = tmp_path / "ari.conf", tmp_path / "extensions.conf"
    conf.write_text((ROOT / "dialplan/ari.conf").read_text())
    extensions.write_text((ROOT / "dialplan/extensions.conf").read_text())
    script = (DOCKER / "asterisk/entrypoint.sh").read_text().replace("/etc/asterisk/ari.conf", str(conf))
    script = script.replace("/etc/asterisk/extensions.conf", str(extensions))
    script = script.replace("mkdir -p /var/run/asterisk /var/spool/asterisk/recording", ":")
    return script, conf, extensions


AGI_SECRET = "0123456789abcdef-agi.secret~"


def test_entrypoint_sets_the_ari_password_and_the_agi_secret(tmp_path):
    """The entrypoint's substitutions replace the placeholders in dialplan/ari.conf and extensions.conf."""
    script, conf, extensions = _entrypoint(tmp_path)
    secret = "s3cr/t&with\\odd"
    env = {"HITCALL_ARI_PASSWORD": secret, "HITCALL_AGI_SECRET": AGI_SECRET, "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(["sh", "-c", script, "entrypoint", "true"], env=env)
    assert proc.returncode == 0
    assert f"password = {secret}\n" in conf.read_text() and "CHANGE-ME" not in conf.read_text()
    text = extensions.read_text()
    assert f"\nHITCALL_AGI_SECRET = {AGI_SECRET}\n" in text
    assert "AGI(${HITCALL_AGI}/optout?secret=${HITCALL_AGI_SECRET})" in text
    for missing in ({}, {"HITCALL_AGI_SECRET": AGI_SECRET}, {"HITCALL_ARI_PASSWORD": "x"}):
        proc = subprocess.run(
            ["sh", "-c", script, "entrypoint", "true"], env={**missing, "PATH": "/usr/bin:/bin"}, capture_output=True
        )
        assert proc.returncode == 2, missing


@pytest.mark.parametrize("bad", ["short", "has space in it 123", "semi;colon-0123456789", "amp&ersand-0123456789"])
def test_entrypoint_refuses_an_agi_secret_that_cannot_travel_in_the_url(tmp_path, bad):
    script, _, extensions = _entrypoint(tmp_path)
    before = extensions.read_text()
    env = {"HITCALL_ARI_PASSWORD": "x", "HITCALL_AGI_SECRET": bad, "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(["sh", "-c", script, "entrypoint", "true"], env=env, capture_output=True)
    assert proc.returncode == 2 and b"HITCALL_AGI_SECRET" in proc.stderr
    assert extensions.read_text() == before


def test_the_sandbox_dialplan_passes_the_sandbox_agi_secret():
    text = (ROOT / "dialplan/sandbox/extensions_hitcall_local.conf").read_text()
    assert f"\nHITCALL_AGI_SECRET = {SANDBOX_AGI_SECRET}\n" in text
    assert AGI_SECRET_RE.fullmatch(SANDBOX_AGI_SECRET)


def test_operator_guide_documents_every_setting(compose):
    guide = (ROOT / "docs/operator-guide.md").read_text()
    for name in {f.validation_alias.choices[0] for f in Settings.model_fields.values()}:  # type: ignore[union-attr]  # every Settings field has an AliasChoices validation alias
        assert f"`{name}`" in guide, name
    for volume in compose["volumes"]:
        assert f"`{volume}`" in guide, volume


def test_postgres_image_creates_the_roles_at_init():
    steps = _instructions(DOCKER / "postgres/Dockerfile")
    assert steps[0] == ("FROM", "postgres:17")
    copies = {shlex.split(a)[-1]: shlex.split(a)[:-1] for i, a in steps if i == "COPY"}
    assert copies["/docker-entrypoint-initdb.d/10-hitcall-roles.sh"] == ["docker/postgres/init-roles.sh"]
    assert copies["/usr/local/share/hitcall/hitcall-roles.sql"] == ["docker/postgres/hitcall-roles.sql"]
    assert "/usr/local/share/hitcall/hitcall-roles.sql" in (DOCKER / "postgres/init-roles.sh").read_text()
