"""The second sandboxed Asterisk's configuration, written into a chroot-like directory
(no root, no Asterisk): its own directories and ports, the trunk to the other instance,
the FastAGI address, and instance 1's files left as they are but for the trunk."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hitcall_pbx.sandbox.asterisk import INSTANCES, Sandbox, SandboxError, _set_options

STOCK = {
    "asterisk.conf": "[directories](!)\nastmoddir => /usr/lib/x86_64-linux-gnu/asterisk/modules\n[options]\n",
    "rtp.conf": "[general]\nrtpstart=10000\nrtpend=20000\n; icesupport=false\n",
    "manager.conf": "[general]\nenabled = yes\nport = 5038\nbindaddr = 127.0.0.1\n",
    "iax.conf": "[general]\n;bindport=4569\n\n[guest]\ntype=user\n",
    "modules.conf": "[modules]\nautoload=yes\n",
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    etc = tmp_path / "root/etc/asterisk"
    etc.mkdir(parents=True)
    for name, text in STOCK.items():
        (etc / name).write_text(text)
    (tmp_path / "root/var/lib/asterisk/moh").mkdir(parents=True)
    (tmp_path / "root/var/lib/asterisk/astdb.sqlite3").write_text("")
    return tmp_path / "root"


def _option(text: str, section: str, key: str) -> list[str]:
    """The values of `key` in `[section]`."""
    part = re.split(rf"^\[{re.escape(section)}\].*$", text, maxsplit=1, flags=re.M)[1]
    part = re.split(r"^\[", part, maxsplit=1, flags=re.M)[0]
    return re.findall(rf"^\s*{re.escape(key)}\s*=>?\s*(\S+)", part, re.M)


def test_set_options_replaces_or_adds_in_the_section_only():
    text = "[general]\nport = 1\n;port = 9\n[other]\nport = 2\n"
    out = _set_options(text, "general", {"port": "5039", "bindaddr": "127.0.0.1"})
    assert _option(out, "general", "port") == ["5039"] and _option(out, "general", "bindaddr") == ["127.0.0.1"]
    assert _option(out, "other", "port") == ["2"]
    assert ";port = 9" in out
    with pytest.raises(SandboxError, match=r"no \[missing\] section"):
        _set_options(text, "missing", {"port": "1"})


def test_instances_have_their_own_ports_and_directories(root):
    one, two = Sandbox(root), Sandbox(root, instance=2)
    assert one.second().instance == 2 and two.other().instance == 1
    assert (one.ari_url, one.sip_port, one.cdr_csv) == (
        "http://127.0.0.1:8088/ari",
        5060,
        root / "var/log/asterisk/cdr-csv/Master.csv",
    )
    assert (two.ari_url, two.sip_port, two.cdr_csv) == (
        "http://127.0.0.1:8089/ari",
        5062,
        root / "var/log/asterisk2/cdr-csv/Master.csv",
    )
    assert one.recordings_dir == root / "var/spool/asterisk/recording"
    assert two.recordings_dir == root / "var/spool/asterisk2/recording"
    assert one.pid_file != two.pid_file and one.log_file != two.log_file
    a, b = INSTANCES[1], INSTANCES[2]
    assert not {a.sip, a.ari, a.ami, a.iax, a.dundi} & {b.sip, b.ari, b.ami, b.iax, b.dundi}
    assert a.rtp[1] < b.rtp[0]
    with pytest.raises(SandboxError, match="no sandbox instance 3"):
        Sandbox(root, instance=3)
    with pytest.raises(SandboxError, match="instance 1"):
        Sandbox(root, agi_port=4600)


def test_second_instance_config(root):
    one = Sandbox(root)
    one.install_configs(agents=3)
    before = {p.name: p.read_text() for p in (root / "etc/asterisk").iterdir()}
    two = Sandbox(root, instance=2, agi_port=4600)
    two.install_configs(agents=3)
    etc2 = root / "etc/asterisk2"

    conf = (etc2 / "asterisk.conf").read_text()
    assert "[directories]\n" in conf and "(!)" not in conf
    dirs = dict(re.findall(r"^(\w+) => (\S+)$", conf, re.M))
    assert dirs["astetcdir"] == "/etc/asterisk2" and dirs["astspooldir"] == "/var/spool/asterisk2"
    assert dirs["astlogdir"] == "/var/log/asterisk2" and dirs["astrundir"] == "/run/asterisk2"
    assert dirs["astdbdir"] == dirs["astvarlibdir"] == "/var/lib/asterisk2"
    assert dirs["astmoddir"] == "/usr/lib/x86_64-linux-gnu/asterisk/modules"
    assert re.search(r"^systemname = ast2$", conf, re.M)

    assert _option((etc2 / "pjsip.conf").read_text(), "transport-udp", "bind") == ["127.0.0.1:5062"]
    assert _option((etc2 / "http.conf").read_text(), "general", "bindport") == ["8089"]
    assert _option((etc2 / "rtp.conf").read_text(), "general", "rtpstart") == ["30000"]
    assert _option((etc2 / "manager.conf").read_text(), "general", "port") == ["5039"]
    assert _option((etc2 / "iax.conf").read_text(), "general", "bindport") == ["4571"]
    # Each server's trunk reaches the other one's transport, and only it is the peer.
    peer2 = (etc2 / "pjsip_hitcall_peer.conf").read_text()
    assert "contact = sip:127.0.0.1:5060" in peer2 and "match = 127.0.0.1:5060" in peer2
    peer1 = (root / "etc/asterisk/pjsip_hitcall_peer.conf").read_text()
    assert "contact = sip:127.0.0.1:5062" in peer1 and "match = 127.0.0.1:5062" in peer1
    # FastAGI: a global, before the local file's first context.
    local = (etc2 / "extensions_hitcall_local.conf").read_text()
    assert local.index("HITCALL_AGI = agi://127.0.0.1:4600") < local.index("[sim-customer]")
    # The same agents, dialplan and modules.
    for name in ("pjsip_hitcall_agents.conf", "extensions.conf", "modules.conf", "cdr.conf", "ari.conf"):
        assert (etc2 / name).read_text() == before[name], name
    # Its own directories; the lib dir shares instance 1's files but not its database.
    assert (root / "var/log/asterisk2/cdr-csv").is_dir() and (root / "var/spool/asterisk2/recording").is_dir()
    lib = root / "var/lib/asterisk2"
    assert (lib / "moh").is_symlink() and not (lib / "astdb.sqlite3").exists()
    # Instance 1's files are untouched by the second instance.
    assert {p.name: p.read_text() for p in (root / "etc/asterisk").iterdir()} == before
    assert _option(before["http.conf"], "general", "bindport") == ["8088"]
    assert _option(before["pjsip.conf"], "transport-udp", "bind") == ["127.0.0.1:5060"]
    assert "HITCALL_AGI =" not in before["extensions_hitcall_local.conf"]
