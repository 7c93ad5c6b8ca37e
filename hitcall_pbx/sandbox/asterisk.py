"""Build, configure, start and stop the sandboxed Asterisk (see package docstring)."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import HitCallError
from ..logs import get_logger
from ..settings import SANDBOX_AGI_SECRET, SANDBOX_ARI_PASSWORD, SANDBOX_ARI_USER

log = get_logger("hitcall.sandbox")

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = Path("/var/cache/hitcall/asterisk-root")
ARI_URL = "http://127.0.0.1:8088/ari"
SIP_PORT = 5060
AGENT_COUNT = 200
_STAMP = "hitcall-sandbox.stamp"
_STAMP_VERSION = "1"


class SandboxError(HitCallError):
    code = "sandbox_error"


@dataclass(frozen=True)
class SandboxInfo:
    running: bool
    pid: int | None
    root: str
    ari_url: str
    ari_user: str
    ari_password: str
    sip: str
    agi_secret: str  # HITCALL_AGI_SECRET of the sandbox dialplan (dialplan/sandbox/extensions_hitcall_local.conf)
    asterisk_version: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _debian_mirror() -> str:
    """The machine's own Debian mirror, read from its apt sources."""
    candidates = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in candidates:
        if not path.is_file() or path.name.endswith((".disabled", ".save")) or "disabled" in path.name:
            continue
        text = path.read_text(errors="replace")
        for m in re.finditer(r"^URIs:\s*(\S+)", text, re.M):
            if "security" not in m.group(1):
                return m.group(1)
        for m in re.finditer(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.M):
            if "security" not in m.group(1):
                return m.group(1)
    raise SandboxError("no Debian mirror found in /etc/apt/sources.list{,.d}")


def _run(cmd: list[str], *, log_file: Path | None = None, timeout: float = 900) -> None:
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(log_file, "ab")) if log_file else subprocess.DEVNULL
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    if proc.returncode != 0:
        where = f" (see {log_file})" if log_file else ""
        raise SandboxError(f"command failed with exit code {proc.returncode}: {' '.join(cmd)}{where}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child is not alive for our purposes.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Sandbox:
    """One sandboxed Asterisk. All paths derive from `root`."""

    def __init__(self, root: Path | str | None = None, *, repo_root: Path = REPO_ROOT) -> None:
        self.root = Path(root or os.environ.get("HITCALL_SANDBOX_ROOT") or DEFAULT_ROOT)
        self.repo_root = repo_root
        self.state_dir = self.root.parent / f"{self.root.name}.run"
        self.pid_file = self.state_dir / "asterisk.pid"
        self.log_file = self.state_dir / "asterisk.log"
        self.build_log = self.root.parent / f"{self.root.name}.build.log"

    # ------------------------------------------------------------ build ---
    def is_built(self) -> bool:
        stamp = self.root / _STAMP
        return stamp.is_file() and stamp.read_text().strip() == _STAMP_VERSION

    def build(self) -> None:
        """Create the chroot with Asterisk and SIPp (about a minute; cached)."""
        if self.is_built():
            return
        if os.geteuid() != 0:
            raise SandboxError("building the Asterisk sandbox needs root (debootstrap, chroot)")
        tmp = self.root.parent / f"{self.root.name}.tmp"
        self._umount_all(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        self.root.parent.mkdir(parents=True, exist_ok=True)
        self.build_log.write_text("")
        if shutil.which("debootstrap") is None:
            log.info("sandbox.installing_debootstrap")
            _run(["apt-get", "update"], log_file=self.build_log)
            _run(["apt-get", "install", "-y", "--no-install-recommends", "debootstrap"], log_file=self.build_log)
        mirror = _debian_mirror()
        log.info("sandbox.debootstrap", root=str(tmp), mirror=mirror)
        t0 = time.monotonic()
        _run(
            ["debootstrap", "--variant=minbase", "--include=ca-certificates", "sid", str(tmp), mirror],
            log_file=self.build_log,
        )
        shutil.copy2("/etc/resolv.conf", tmp / "etc/resolv.conf")
        script = self.repo_root / "docker/asterisk/install-packages.sh"
        installer = tmp / "tmp/install-packages.sh"
        shutil.copy2(script, installer)
        self._mount(tmp)
        try:
            inner = Path("/") / installer.relative_to(tmp)  # the script seen inside the chroot
            _run(["chroot", str(tmp), "/bin/sh", str(inner)], log_file=self.build_log)
        finally:
            self._umount_all(tmp)
        (tmp / _STAMP).write_text(_STAMP_VERSION + "\n")
        if self.root.exists():
            self._umount_all(self.root)
            shutil.rmtree(self.root)
        tmp.rename(self.root)
        log.info("sandbox.built", root=str(self.root), seconds=round(time.monotonic() - t0, 1))

    # ----------------------------------------------------------- config ---
    def install_configs(self, agents: int = AGENT_COUNT) -> None:
        """Copy the operator files from dialplan/, then the sandbox overrides."""
        etc = self.root / "etc/asterisk"
        for src in sorted((self.repo_root / "dialplan").glob("*.conf")):
            shutil.copy2(src, etc / src.name)
        for src in sorted((self.repo_root / "dialplan/sandbox").glob("*.conf")):
            shutil.copy2(src, etc / src.name)
        lines = ["; Generated by hitcall sandbox: agent phones agent1..agentN (SIPp on loopback).\n"]
        for n in range(1, agents + 1):
            lines.append(f"[agent{n}](agent-endpoint)\naors = agent{n}\n[agent{n}](agent-aor)\n")
        (etc / "pjsip_hitcall_agents.conf").write_text("".join(lines))
        # Quieter, faster start: modules a dialer never uses.
        modules = etc / "modules.conf"
        text = modules.read_text()
        extra = (
            "\n; hitcall sandbox\nnoload => chan_dahdi.so\nnoload => chan_iax2.so\nnoload => chan_mobile.so\n"
            "noload => chan_unistim.so\nnoload => res_hep.so\nnoload => res_hep_pjsip.so\n"
            "noload => res_hep_rtcp.so\nnoload => cdr_pgsql.so\nnoload => cel_pgsql.so\n"
            "noload => res_config_ldap.so\nnoload => cdr_radius.so\nnoload => cel_radius.so\n"
        )
        if "; hitcall sandbox" not in text:
            modules.write_text(text + extra)

    # ------------------------------------------------------------- run ---
    def _mounts(self, root: Path) -> list[Path]:
        return [root / "proc", root / "dev"]

    def _is_mounted(self, path: Path) -> bool:
        target = str(path.resolve())
        with open("/proc/mounts") as fh:
            return any(line.split()[1] == target for line in fh)

    def _mount(self, root: Path) -> None:
        proc, dev = self._mounts(root)
        if not self._is_mounted(proc):
            _run(["mount", "-t", "proc", "proc", str(proc)])
        if not self._is_mounted(dev):
            _run(["mount", "--bind", "/dev", str(dev)])

    def _umount_all(self, root: Path) -> None:
        for path in reversed(self._mounts(root)):
            if path.exists() and self._is_mounted(path):
                subprocess.run(["umount", "-l", str(path)], check=False)

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def start(self, *, timeout: float = 60.0) -> SandboxInfo:
        if self.pid() is not None:
            # Already running: bring its configs up to date with the clone's dialplan/.
            self.install_configs()
            self.cli("dialplan reload")
            self.cli("module reload res_pjsip.so")
            return self.status()
        self.build()
        self.install_configs()
        self._mount(self.root)
        for sub in ("var/run/asterisk", "var/spool/asterisk/recording"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        stale = self.root / "var/run/asterisk/asterisk.ctl"
        stale.unlink(missing_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(
                ["chroot", str(self.root), "asterisk", "-f", "-U", "root", "-G", "root"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        t0 = time.monotonic()
        info = self.wait_ready(timeout=timeout, proc=proc)
        log.info("sandbox.started", pid=proc.pid, seconds=round(time.monotonic() - t0, 2))
        return info

    def wait_ready(self, *, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> SandboxInfo:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise SandboxError(f"Asterisk exited with code {proc.returncode}; see {self.log_file}")
            try:
                version = self.ari_version()
                if version:
                    return self.status(version=version)
            except (OSError, urllib.error.URLError, ValueError) as exc:
                last = str(exc)
            time.sleep(0.1)
        raise SandboxError(f"ARI did not answer at {ARI_URL} within {timeout:.0f} s ({last})")

    def ari_version(self) -> str | None:
        token = base64.b64encode(f"{SANDBOX_ARI_USER}:{SANDBOX_ARI_PASSWORD}".encode()).decode()
        # ARI_URL is a fixed http://127.0.0.1 address: no file: or other scheme can reach these calls.
        req = urllib.request.Request(  # noqa: S310
            f"{ARI_URL}/asterisk/info?only=system", headers={"Authorization": f"Basic {token}"}
        )
        with urllib.request.urlopen(req, timeout=2) as resp:  # noqa: S310
            data = json.loads(resp.read())
        return data.get("system", {}).get("version")

    def cli(self, command: str, *, timeout: float = 10) -> str:
        """Run one Asterisk CLI command in the running sandbox."""
        proc = subprocess.run(
            ["chroot", str(self.root), "asterisk", "-rx", command],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise SandboxError(f"asterisk -rx {command!r} failed: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout

    def stop(self, *, timeout: float = 15.0, unmount: bool = True) -> None:
        pid = self.pid()
        if pid is not None:
            try:
                self.cli("core stop now", timeout=5)
            except (SandboxError, subprocess.TimeoutExpired):
                pass
            deadline = time.monotonic() + timeout
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
                while _pid_alive(pid):
                    time.sleep(0.05)
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            log.info("sandbox.stopped", pid=pid)
        self.pid_file.unlink(missing_ok=True)
        if unmount:
            self._umount_all(self.root)

    def restart(self, *, timeout: float = 60.0) -> SandboxInfo:
        self.stop(unmount=False)
        return self.start(timeout=timeout)

    def status(self, *, version: str | None = None) -> SandboxInfo:
        pid = self.pid()
        if pid is not None and version is None:
            try:
                version = self.ari_version()
            except (OSError, urllib.error.URLError, ValueError):
                version = None
        return SandboxInfo(
            running=pid is not None,
            pid=pid,
            root=str(self.root),
            ari_url=ARI_URL,
            ari_user=SANDBOX_ARI_USER,
            ari_password=SANDBOX_ARI_PASSWORD,
            sip=f"udp:127.0.0.1:{SIP_PORT}",
            agi_secret=SANDBOX_AGI_SECRET,
            asterisk_version=version,
        )

    @contextlib.contextmanager
    def exclusive(self, timeout: float = 1800.0) -> Iterator[None]:
        """Hold the sandbox for one user at a time (a test session, the demo): they all
        register the same Stasis app and log in the same agent phones."""
        self.root.parent.mkdir(parents=True, exist_ok=True)
        with open(self.root.parent / f"{self.root.name}.lock", "w") as fh:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise SandboxError("the Asterisk sandbox is busy (another test run or demo)") from None
                    time.sleep(0.5)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @property
    def recordings_dir(self) -> Path:
        return self.root / "var/spool/asterisk/recording"
