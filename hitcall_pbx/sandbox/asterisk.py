"""Build, configure, start and stop the sandboxed Asterisk (see package docstring).

One chroot can run two Asterisk servers side by side (`Sandbox(instance=2)`, or
`Sandbox().second()`): the second has its own config dir (/etc/asterisk2 in the chroot),
run, spool, log, lib and cache dirs, its own ports (`INSTANCES`) and a PJSIP trunk named
`peer` to the other one (dialplan/sandbox/pjsip.conf, dialplan/extensions.conf
[hitcall-peer])."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
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
AGI_PORT = 4573  # the FastAGI port of dialplan/extensions.conf's HITCALL_AGI


@dataclass(frozen=True)
class InstancePorts:
    """Where one sandboxed Asterisk listens on 127.0.0.1."""

    sip: int  # PJSIP UDP transport
    ari: int  # Asterisk's HTTP server (ARI)
    rtp: tuple[int, int]  # rtp.conf rtpstart, rtpend
    ami: int  # manager.conf
    iax: int  # chan_iax2 (loaded, unused)
    dundi: int  # pbx_dundi (loaded, unused)
    system_name: str  # asterisk.conf systemname: channel unique ids differ between the servers


INSTANCES: dict[int, InstancePorts] = {
    # Instance 1 is the stock configuration: these are the values its files already hold.
    1: InstancePorts(sip=5060, ari=8088, rtp=(10000, 20000), ami=5038, iax=4569, dundi=4520, system_name=""),
    2: InstancePorts(sip=5062, ari=8089, rtp=(30000, 31998), ami=5039, iax=4571, dundi=4522, system_name="ast2"),
}
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
    instance: int = 1
    agi_url: str = f"agi://127.0.0.1:{AGI_PORT}"  # where its dialplan's FastAGI requests go (HITCALL_AGI)
    peer: str = ""  # the trunk to the other instance: dial PJSIP/<endpoint>@peer or Local/<endpoint>@hitcall-peer

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


def _set_options(text: str, section: str, values: dict[str, str]) -> str:
    """`text` (an Asterisk .conf) with `key = value` set in the first `[section]`: an
    existing line of the key replaced, else the line added under the section header."""
    lines = text.splitlines(keepends=True)
    start = next(
        (i for i, line in enumerate(lines) if re.match(rf"\[{re.escape(section)}\](\(.*\))?\s*(;.*)?$", line.strip())),
        None,
    )
    if start is None:
        raise SandboxError(f"no [{section}] section to set {', '.join(values)} in")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    for key, value in values.items():
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=>?")
        at = next((i for i in range(start + 1, end) if pattern.match(lines[i])), None)
        if at is None:
            lines.insert(start + 1, f"{key} = {value}\n")
            end += 1
        else:
            lines[at] = f"{key} = {value}\n"
    return "".join(lines)


class Sandbox:
    """One sandboxed Asterisk. All paths derive from `root`.

    `instance=1` (the default) is the sandbox every test uses, configured in
    /etc/asterisk of the chroot. `instance=2` is a second Asterisk in the same chroot
    (`second()`), with its own config, run, spool, log and lib dirs under names ending in
    2, its own ports (`INSTANCES[2]`), the same modules, simulated customers, agent
    endpoints and dialplan, and a PJSIP trunk `peer` to instance 1 (and instance 1's
    `peer` to it). `agi_port` points its dialplan's FastAGI (HITCALL_AGI) elsewhere
    than 127.0.0.1:4573 (instance 2 only; `set_agi_port` changes it while running)."""

    def __init__(
        self,
        root: Path | str | None = None,
        *,
        instance: int = 1,
        agi_port: int | None = None,
        repo_root: Path = REPO_ROOT,
    ) -> None:
        if instance not in INSTANCES:
            raise SandboxError(f"no sandbox instance {instance} (there are {', '.join(map(str, INSTANCES))})")
        if agi_port is not None and instance == 1:
            raise SandboxError("the FastAGI port of instance 1 is the one in dialplan/extensions.conf")
        self.root = Path(root or os.environ.get("HITCALL_SANDBOX_ROOT") or DEFAULT_ROOT)
        self.repo_root = repo_root
        self.instance = instance
        self.ports = INSTANCES[instance]
        self.agi_port = agi_port or AGI_PORT
        suffix = "" if instance == 1 else str(instance)
        self.state_dir = self.root.parent / f"{self.root.name}.run{suffix}"
        self.pid_file = self.state_dir / "asterisk.pid"
        self.log_file = self.state_dir / "asterisk.log"
        self.build_log = self.root.parent / f"{self.root.name}.build.log"
        # Directories as Asterisk sees them inside the chroot (asterisk.conf [directories]).
        self.etc_dir = f"/etc/asterisk{suffix}"
        self.run_dir = "/var/run/asterisk" if instance == 1 else f"/run/asterisk{suffix}"
        self.spool_dir = f"/var/spool/asterisk{suffix}"
        self.log_dir = f"/var/log/asterisk{suffix}"
        self.lib_dir = f"/var/lib/asterisk{suffix}"
        self.cache_dir = f"/var/cache/asterisk{suffix}"

    def second(self) -> Sandbox:
        """The second Asterisk of this chroot (instance 2), with the default FastAGI port."""
        return Sandbox(self.root, instance=2, repo_root=self.repo_root)

    def other(self) -> Sandbox:
        """The instance at the far end of this one's `peer` trunk."""
        return Sandbox(self.root, instance=2 if self.instance == 1 else 1, repo_root=self.repo_root)

    def _host(self, inner: str) -> Path:
        """A path inside the chroot, seen from the host."""
        return self.root / inner.lstrip("/")

    @property
    def ari_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.ari}/ari"

    @property
    def sip_port(self) -> int:
        return self.ports.sip

    @property
    def agi_url(self) -> str:
        return f"agi://127.0.0.1:{self.agi_port}"

    @property
    def cdr_csv(self) -> Path:
        """cdr_csv's Master.csv of this instance (dialplan/cdr.conf), seen from the host."""
        return self._host(self.log_dir) / "cdr-csv/Master.csv"

    def _asterisk(self) -> list[str]:
        """The asterisk command inside the chroot, with this instance's asterisk.conf."""
        cmd = ["chroot", str(self.root), "asterisk"]
        return cmd if self.instance == 1 else [*cmd, "-C", f"{self.etc_dir}/asterisk.conf"]

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
        """Copy the operator files from dialplan/, then the sandbox overrides (and for
        instance 2 its own directories and ports)."""
        etc = self._host(self.etc_dir)
        if self.instance != 1:
            # Start from instance 1's files (Debian's stock configs with the sandbox's).
            shutil.copytree(self.root / "etc/asterisk", etc, symlinks=True, dirs_exist_ok=True)
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
        other = INSTANCES[self.other().instance]
        (etc / "pjsip_hitcall_peer.conf").write_text(
            f"; Generated by hitcall sandbox: the trunk [peer] (dialplan/sandbox/pjsip.conf) to the other\n"
            f"; sandboxed Asterisk, whose PJSIP transport is 127.0.0.1:{other.sip}.\n"
            f"[peer](peer-aor)\ncontact = sip:127.0.0.1:{other.sip}\n"
            f"[peer-identify](peer-identify)\nmatch = 127.0.0.1:{other.sip}\n"
        )
        if self.instance != 1:
            self._install_instance_configs(etc)

    def _install_instance_configs(self, etc: Path) -> None:
        """Instance 2's own directories, ports, unique ids and FastAGI address."""
        p = self.ports
        moddir = "/usr/lib/x86_64-linux-gnu/asterisk/modules"
        stock = (self.root / "etc/asterisk/asterisk.conf").read_text()
        if m := re.search(r"^\s*astmoddir\s*=>\s*(\S+)", stock, re.M):
            moddir = m.group(1)
        dirs = {
            "astcachedir": self.cache_dir,
            "astetcdir": self.etc_dir,
            "astmoddir": moddir,
            "astvarlibdir": self.lib_dir,
            "astdbdir": self.lib_dir,
            "astkeydir": "/usr/share/asterisk",  # keys/ there, as instance 1 finds them
            "astdatadir": "/usr/share/asterisk",
            "astagidir": "/usr/share/asterisk/agi-bin",
            "astspooldir": self.spool_dir,
            "astrundir": self.run_dir,
            "astlogdir": self.log_dir,
            "astsbindir": "/usr/sbin",
        }
        (etc / "asterisk.conf").write_text(
            f"; Generated by hitcall sandbox: Asterisk instance {self.instance} of the chroot.\n[directories]\n"
            + "".join(f"{k} => {v}\n" for k, v in dirs.items())
            + f"\n[options]\ndocumentation_language = en_US\nsystemname = {p.system_name}\n"
        )
        edits = {
            "pjsip.conf": ("transport-udp", {"bind": f"127.0.0.1:{p.sip}"}),
            "http.conf": ("general", {"bindport": str(p.ari)}),
            "rtp.conf": ("general", {"rtpstart": str(p.rtp[0]), "rtpend": str(p.rtp[1])}),
            "manager.conf": ("general", {"port": str(p.ami)}),
            "iax.conf": ("general", {"bindport": str(p.iax)}),
            "dundi.conf": ("general", {"port": str(p.dundi)}),
        }
        for name, (section, values) in edits.items():
            path = etc / name
            if name == "dundi.conf" and not path.exists():
                continue  # not in every Asterisk package: DUNDi then stays unconfigured in both
            path.write_text(_set_options(path.read_text(), section, values))
        # FastAGI: the globals of extensions_hitcall_local.conf come before its first context.
        local = etc / "extensions_hitcall_local.conf"
        text = local.read_text()
        first = re.search(r"^\[", text, re.M)
        at = first.start() if first else len(text)
        line = f"; hitcall sandbox instance {self.instance}: its FastAGI server\nHITCALL_AGI = {self.agi_url}\n"
        local.write_text(text[:at] + line + text[at:])
        # Its own run, spool, log, lib and cache dirs; the lib dir shares instance 1's
        # files (sounds, music on hold) but not its database (astdb).
        for inner in (self.run_dir, self.cache_dir, self.log_dir + "/cdr-csv", self.spool_dir + "/recording"):
            self._host(inner).mkdir(parents=True, exist_ok=True)
        for sub in ("dictate", "meetme", "monitor", "outgoing", "system", "tmp", "voicemail"):
            self._host(f"{self.spool_dir}/{sub}").mkdir(parents=True, exist_ok=True)
        lib = self._host(self.lib_dir)
        lib.mkdir(parents=True, exist_ok=True)
        for entry in (self.root / "var/lib/asterisk").iterdir():
            target = lib / entry.name
            if entry.name.startswith("astdb") or target.exists() or target.is_symlink():
                continue
            target.symlink_to(Path("/var/lib/asterisk") / entry.name)

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
        self._hosts_entry()
        self._mount(self.root)
        if self.instance == 1:
            for sub in ("var/run/asterisk", "var/spool/asterisk/recording"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            stale = self.root / "var/run/asterisk/asterisk.ctl"
        else:
            stale = self._host(self.run_dir) / "asterisk.ctl"
        stale.unlink(missing_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(
                [*self._asterisk(), "-f", "-U", "root", "-G", "root"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        t0 = time.monotonic()
        info = self.wait_ready(timeout=timeout, proc=proc)
        log.info("sandbox.started", instance=self.instance, pid=proc.pid, seconds=round(time.monotonic() - t0, 2))
        return info

    def _hosts_entry(self) -> None:
        """The machine's host name resolves inside the chroot (its /etc/hosts). Asterisk looks
        it up for every RTP session (the local address RTCP reports name); unresolved, each
        call asks DNS for it and for A.ROOT-SERVERS.NET, and a DNS server that drops a query
        holds the call's set-up for 5 s."""
        name = socket.gethostname()
        hosts = self.root / "etc/hosts"
        text = hosts.read_text() if hosts.exists() else ""
        if not name or any(name in line.split()[1:] for line in text.splitlines() if not line.startswith("#")):
            return
        hosts.write_text(text + ("" if text.endswith("\n") or not text else "\n") + f"127.0.0.1\t{name}\n")

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
        raise SandboxError(f"ARI did not answer at {self.ari_url} within {timeout:.0f} s ({last})")

    def ari_version(self) -> str | None:
        token = base64.b64encode(f"{SANDBOX_ARI_USER}:{SANDBOX_ARI_PASSWORD}".encode()).decode()
        # ari_url is a fixed http://127.0.0.1 address: no file: or other scheme can reach these calls.
        req = urllib.request.Request(  # noqa: S310
            f"{self.ari_url}/asterisk/info?only=system", headers={"Authorization": f"Basic {token}"}
        )
        with urllib.request.urlopen(req, timeout=2) as resp:  # noqa: S310
            data = json.loads(resp.read())
        return data.get("system", {}).get("version")

    def cli(self, command: str, *, timeout: float = 10) -> str:
        """Run one Asterisk CLI command in the running sandbox."""
        proc = subprocess.run(
            [*self._asterisk(), "-rx", command],
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
            log.info("sandbox.stopped", instance=self.instance, pid=pid)
        self.pid_file.unlink(missing_ok=True)
        # /proc and /dev of the chroot stay while the other instance runs there.
        if unmount and self.other().pid() is None:
            self._umount_all(self.root)

    def set_agi_port(self, port: int) -> None:
        """Point the running instance's FastAGI (the HITCALL_AGI global) at 127.0.0.1:`port`
        until its next start or dialplan reload (instance 2)."""
        if self.instance == 1:
            raise SandboxError("the FastAGI port of instance 1 is the one in dialplan/extensions.conf")
        self.agi_port = port
        self.cli(f"dialplan set global HITCALL_AGI {self.agi_url}")

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
            ari_url=self.ari_url,
            ari_user=SANDBOX_ARI_USER,
            ari_password=SANDBOX_ARI_PASSWORD,
            sip=f"udp:127.0.0.1:{self.sip_port}",
            agi_secret=SANDBOX_AGI_SECRET,
            asterisk_version=version,
            instance=self.instance,
            agi_url=self.agi_url,
            peer=f"udp:127.0.0.1:{self.other().sip_port}",
        )

    @contextlib.contextmanager
    def exclusive(self, timeout: float = 1800.0) -> Iterator[None]:
        """Hold the sandbox for one user at a time (a test session, the demo): they all
        register the same Stasis app and log in the same agent phones. One lock for the
        chroot: it covers both instances."""
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
        return self._host(self.spool_dir) / "recording"
