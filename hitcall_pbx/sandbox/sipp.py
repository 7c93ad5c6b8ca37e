"""SIPp processes playing agents' SIP phones against the sandboxed Asterisk."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from .asterisk import REPO_ROOT, SIP_PORT, Sandbox, SandboxError, _pid_alive

SCENARIO_DIR = REPO_ROOT / "tests" / "sipp"


class SippAgents:
    """One SIPp process that dials the login extension once per agent and keeps
    each call up until Asterisk hangs it up (the agent is logged out)."""

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
            f"127.0.0.1:{SIP_PORT}",
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
        pid = self.proc.pid
        if self.proc.poll() is None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.proc.poll() is None and _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> SippAgents:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
