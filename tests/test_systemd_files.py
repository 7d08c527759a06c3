"""The shipped systemd files (systemd/) agree with each other, with the daemon and with the docs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import FLOWD, REPO

from flowd.config import load_config
from flowd.daemon.serve import DRAIN_S

SYSTEMD = REPO / "systemd"
UNIT = SYSTEMD / "flowd.service"
CONFIG = SYSTEMD / "flowd.toml"


def unit_settings(text: str) -> dict[str, list[str]]:
    """``Section.Key`` → every value assigned to it, in order (systemd allows a key many times)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        assert not line.endswith("\\"), "continuation lines are not used (nor parsed here)"
        key, sep, value = line.partition("=")
        assert sep, f"not a setting: {raw!r}"
        settings.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return settings


@pytest.fixture(scope="module")
def unit() -> dict[str, list[str]]:
    return unit_settings(UNIT.read_text(encoding="utf-8"))


def one(unit: dict[str, list[str]], key: str) -> str:
    values = unit.get(f"Service.{key}")
    assert values is not None and len(values) == 1, f"{key}= should be set once: {values}"
    return values[0]


def test_service_is_notify_with_watchdog_and_reload(unit: dict[str, list[str]]) -> None:
    assert one(unit, "Type") == "notify"
    assert one(unit, "NotifyAccess") == "main"
    assert one(unit, "WatchdogSec") == "30"
    assert one(unit, "ExecReload") == "/bin/kill -HUP $MAINPID"
    exec_start = one(unit, "ExecStart").split()
    assert exec_start[1:] == ["serve", "--config", "/etc/flowd/flowd.toml"]
    assert one(unit, "Restart") == "on-failure"
    assert one(unit, "KillMode") == "mixed"
    # systemd must not SIGKILL the daemon while it is still draining running tasks.
    assert float(one(unit, "TimeoutStopSec")) > DRAIN_S


def test_service_is_hardened(unit: dict[str, list[str]]) -> None:
    assert one(unit, "User") == one(unit, "Group") == "flowd"
    assert one(unit, "NoNewPrivileges") == "yes"
    assert one(unit, "ProtectSystem") == "strict"
    assert one(unit, "ReadWritePaths").split() == ["/srv/flowd"]
    assert one(unit, "ProtectHome") == "yes"
    assert one(unit, "PrivateTmp") == "yes"
    assert one(unit, "CapabilityBoundingSet") == ""
    assert one(unit, "SystemCallFilter") == "@system-service"
    assert set(one(unit, "RestrictAddressFamilies").split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert "Service.MemoryDenyWriteExecute" not in unit  # why: the comment in the unit
    assert unit["Install.WantedBy"] == ["multi-user.target"]


def test_config_check_accepts_the_production_config() -> None:
    result = subprocess.run(
        [*FLOWD, "config", "check", "--config", str(CONFIG)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "ok (1 projects, 1 watches" in result.stdout


def test_config_lives_where_the_unit_lets_it_write(unit: dict[str, list[str]]) -> None:
    """Every folder flowd writes is the StateDirectory or under ReadWritePaths: anything else is
    read-only under ProtectSystem=strict and would fail only once a file arrives."""
    config = load_config(CONFIG, env={})
    assert config.state_dir == Path("/var/lib") / one(unit, "StateDirectory")
    assert Path(one(unit, "ExecStart").split()[-1]).parent == Path("/etc") / one(
        unit, "ConfigurationDirectory"
    )
    writable = [Path(p) for p in one(unit, "ReadWritePaths").split()]
    folders = [config.data_root]
    folders += [p.root for p in config.projects]
    folders += [w.input_dir for w in config.watches] + [w.output_dir for w in config.watches]
    for folder in folders:
        assert any(folder.is_relative_to(root) for root in writable), folder
    assert config.api.host == "127.0.0.1"
    assert config.log.format.value == "json"


def test_sysusers_and_tmpfiles_match_the_unit_and_config() -> None:
    users = [
        line.split()
        for line in (SYSTEMD / "flowd.sysusers").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert [(u[0], u[1]) for u in users] == [("u", "flowd")]
    made: dict[Path, tuple[str, str, str]] = {}
    for line in (SYSTEMD / "flowd.tmpfiles").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            kind, path, mode, user, group, _age = line.split()
            assert kind == "d"
            made[Path(path)] = (mode, user, group)
    assert all((user, group) == ("flowd", "flowd") for _, user, group in made.values())
    config = load_config(CONFIG, env={})
    for folder in [config.data_root, *(w.input_dir for w in config.watches)]:
        assert folder in made, folder
    for watch in config.watches:
        assert watch.output_dir in made, watch.output_dir
        assert made[watch.input_dir][0] == "2770"  # group flowd may drop files


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: an existing program stands in for /opt/flowd/.venv/bin/flowd.
    flowd = shutil.which("true") or "/bin/true"
    text = UNIT.read_text(encoding="utf-8").replace("/opt/flowd/.venv/bin/flowd", flowd)
    copy = tmp_path / "flowd.service"
    copy.write_text(text, encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "flowd.service" not in result.stderr, result.stderr
