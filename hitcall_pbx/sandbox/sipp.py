"""SIPp processes playing agents' SIP phones against the sandboxed Asterisk."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from .asterisk import REPO_ROOT, Sandbox, SandboxError, _pid_alive

SCENARIO_DIR = REPO_ROOT / "tests" / "sipp"


def _terminate(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM the SIPp process (by its pid), SIGKILL it after `timeout` s."""
    pid = proc.pid
    if proc.poll() is None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None and _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            proc.wait()


class SippAgents:
    """One SIPp process that dials the login extension once per agent and keeps
    each call up until Asterisk hangs it up (the agent is logged out). The agents log in
    on `sandbox`'s Asterisk: `SippAgents(sandbox.second(), ...)` logs them in on the
    second server."""

    def __init__(
        self,
        sandbox: Sandbox,
        agents: list[str],
        *,
        port: int = 5071,
        scenario: str = "agent_login.xml",
        service: str = "*70",
        rate: int = 50,
    ) -> None:
        if not agents:
            raise ValueError("at least one agent")
        self.sandbox = sandbox
        self.agents = agents
        self.port = port
        self.scenario = scenario
        self.service = service
        self.rate = rate
        self.proc: subprocess.Popen | None = None
        self.workdir = sandbox.root / "tmp" / f"hitcall-sipp-{port}"

    def start(self) -> None:
        if self.proc is not None:
            raise SandboxError("SIPp already started")
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir(parents=True)
        shutil.copy2(SCENARIO_DIR / self.scenario, self.workdir / self.scenario)
        (self.workdir / "agents.csv").write_text("SEQUENTIAL\n" + "".join(f"{a};\n" for a in self.agents))
        inner = Path("/") / self.workdir.relative_to(self.sandbox.root)  # the work dir seen inside the chroot
        n = len(self.agents)
        cmd = [
            "chroot",
            str(self.sandbox.root),
            "sipp",
            "-sf",
            str(inner / self.scenario),
            "-inf",
            str(inner / "agents.csv"),
            "-i",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-mi",
            "127.0.0.1",
            "-mp",
            str(self.port + 20000),
            "-s",
            self.service,
            "-m",
            str(n),
            "-l",
            str(n),
            "-r",
            str(self.rate),
            "-rp",
            "1000",
            "-nostdin",
            "-trace_err",
            "-error_file",
            str(inner / "errors.log"),
            f"127.0.0.1:{self.sandbox.sip_port}",
        ]
        with open(self.workdir / "sipp.out", "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def errors(self) -> str:
        path = self.workdir / "errors.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc is None:
            return
        _terminate(self.proc, timeout)
        self.proc = None

    def __enter__(self) -> SippAgents:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SippPhone:
    """A SIP phone registered on `sandbox`'s Asterisk as `endpoint` (a REGISTER, so that the
    server can ring it: `PJSIP/<endpoint>` there, `Local/<endpoint>@hitcall-peer` from the
    other server), answering every call at once until stopped (then it unregisters).

    Two SIPp processes: one answers on `port`, one registers (and unregisters) from
    `port + 1` with its contact at `port`. The answer's SDP names 127.0.0.1:`rtp_port` as
    where to send the phone's audio: a test that listens there (and sends its own RTP from
    there: the endpoints use symmetric RTP) hears and talks for the phone. Without
    `rtp_port` the audio goes to the answering SIPp's media port, which ignores it."""

    def __init__(
        self, sandbox: Sandbox, endpoint: str, *, port: int = 5081, rtp_port: int | None = None, expires: int = 3600
    ) -> None:
        self.sandbox = sandbox
        self.endpoint = endpoint
        self.port = port
        self.rtp_port = rtp_port or port + 20000
        self.expires = expires
        self.proc: subprocess.Popen | None = None
        self.workdir = sandbox.root / "tmp" / f"hitcall-phone-{port}"

    def _inner(self, name: str) -> str:
        return str(Path("/") / (self.workdir / name).relative_to(self.sandbox.root))

    def _sipp(self, *args: str) -> list[str]:
        return ["chroot", str(self.sandbox.root), "sipp", "-i", "127.0.0.1", "-mi", "127.0.0.1", "-nostdin", *args]

    def register(self, expires: int | None = None, timeout: float = 10.0) -> None:
        """One REGISTER (`expires` 0 unregisters); SandboxError unless Asterisk accepts it."""
        csv = f"reg-{self.expires if expires is None else expires}.csv"
        (self.workdir / csv).write_text(
            f"SEQUENTIAL\n{self.endpoint};{self.port};{self.expires if expires is None else expires};\n"
        )
        cmd = self._sipp(
            "-sf", self._inner("phone_register.xml"), "-inf", self._inner(csv),
            "-p", str(self.port + 1), "-mp", str(self.port + 20002),
            "-m", "1", "-timeout", f"{int(timeout)}s", "-timeout_error",
            "-trace_err", "-error_file", self._inner("register-errors.log"),
            f"127.0.0.1:{self.sandbox.sip_port}",
        )  # fmt: skip
        with open(self.workdir / "register.out", "ab") as log:
            proc = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, timeout=timeout + 5
            )
        if proc.returncode != 0:
            raise SandboxError(
                f"SIPp could not register {self.endpoint} (exit code {proc.returncode}; see {self.workdir})"
            )

    def start(self) -> None:
        if self.proc is not None:
            raise SandboxError("SIPp phone already started")
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir(parents=True)
        for scenario in ("phone_answer.xml", "phone_register.xml"):
            shutil.copy2(SCENARIO_DIR / scenario, self.workdir / scenario)
        cmd = self._sipp(
            "-sf", self._inner("phone_answer.xml"), "-p", str(self.port), "-mp", str(self.port + 20000),
            "-key", "rtp_to", str(self.rtp_port), "-trace_err", "-error_file", self._inner("errors.log"),
        )  # fmt: skip
        with open(self.workdir / "sipp.out", "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            self.register()
        except BaseException:
            self.stop(unregister=False)
            raise

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def errors(self) -> str:
        path = self.workdir / "errors.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, timeout: float = 5.0, *, unregister: bool = True) -> None:
        if self.proc is None:
            return
        if unregister:
            try:
                self.register(expires=0)
            except (SandboxError, subprocess.TimeoutExpired):
                pass  # the server went away; its contact expires on its own
        _terminate(self.proc, timeout)
        self.proc = None

    def __enter__(self) -> SippPhone:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
