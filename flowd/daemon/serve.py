"""``flowd serve --config FILE``: the daemon process (SPEC §8).

Start-up order: logging, the API token, the listening socket (a taken port is a one-line error
before anything else starts), the :class:`~flowd.daemon.service.Service` (crash recovery, workers,
scheduler, timers), then uvicorn on the socket. ``state_dir/daemon.json`` tells clients on this
machine where the API listens (the real port, also when the config says ``port = 0``); it is
removed on a clean stop. SIGTERM/SIGINT stop uvicorn, then the service drains.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import structlog
import uvicorn

from flowd.api.app import gated_app
from flowd.config import FlowdConfig, load_config
from flowd.daemon.service import Service
from flowd.daemon.systemd import Notifier
from flowd.daemon.tokens import ensure_tokens, token_file
from flowd.errors import ConfigError
from flowd.fsutil import write_atomic
from flowd.logging import configure

log = structlog.get_logger("flowd.daemon")

DAEMON_FILE = "daemon.json"
LOCK_FILE = "daemon.lock"
DRAIN_S = 30.0
"""How long running tasks may take to finish at shutdown before their workers are stopped."""


def daemon_file(config: FlowdConfig) -> Path:
    return config.state_dir / DAEMON_FILE


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (``port`` 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns TCP_NODELAY on only for sockets that say they are TCP, and
    # without it every answer (headers and body are separate writes) waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            "api", [f"[api] cannot listen on {host}:{port}: {exc.strerror or exc}"]
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def lock_state_dir(config: FlowdConfig) -> int:
    """Hold ``state_dir/daemon.lock`` for the life of this process (released by the kernel when
    it dies, even by ``kill -9``). One daemon per state directory: crash recovery re-queues every
    task left running, which is only right when no other daemon is running them."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    path = config.state_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = ""
        with contextlib.suppress(OSError, ValueError):
            holder = f" (pid {json.loads(daemon_file(config).read_text())['pid']})"
        raise ConfigError(
            "state_dir",
            [
                f"state_dir {config.state_dir}: another flowd daemon{holder} is using it; stop it first"
            ],
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _reloader(
    service: Service, config_path: Path | None, notifier: Notifier
) -> Callable[[int, Any], None]:
    """The SIGHUP handler: re-read the config file on a thread of its own (a signal handler must
    not block) and apply its watches and projects; a config with errors changes nothing."""
    lock = threading.Lock()

    def reload() -> None:
        if not lock.acquire(blocking=False):
            return  # a reload is running; it reads the file as it is now anyway
        notifier.reloading()
        try:
            if config_path is None:
                return
            log.info("config_reload_started", config=str(config_path))
            try:
                new = load_config(config_path)
            except ConfigError as exc:
                log.error(
                    "config_reload_failed", config=str(config_path), problems=list(exc.problems)
                )
                return
            service.reload(new)
        except Exception:
            log.exception("config_reload_failed", config=str(config_path))
        finally:
            lock.release()
            notifier.ready(service.summary())

    def handler(signum: int, frame: Any) -> None:
        threading.Thread(target=reload, name="flowd-reload", daemon=True).start()

    return handler


def _supervise(server: uvicorn.Server, service: Service, notifier: Notifier, url: str) -> None:
    """Tell systemd ``READY=1`` once the API accepts connections, then feed its watchdog — but
    only while the API answers ``/healthz`` and the daemon's threads are alive, so that a daemon
    stuck anywhere stops feeding it and is restarted. Without systemd, nothing is sent."""
    while not server.started:
        if server.should_exit:
            return
        time.sleep(0.02)
    notifier.ready(service.summary())
    interval = notifier.watchdog_interval_s
    if interval is None:
        return
    while not server.should_exit:
        problem = service.healthy()
        if problem is None:
            try:
                if not requests.get(url + "/healthz", timeout=interval).ok:
                    problem = "the API does not answer /healthz"
            except requests.RequestException as exc:
                problem = f"the API does not answer /healthz: {exc}"
        if problem is None:
            notifier.watchdog()
            notifier.status(service.summary())
        else:
            log.error("watchdog_not_fed", problem=problem)
        time.sleep(interval)


def serve(config: FlowdConfig, config_path: Path | None = None) -> None:
    """Run the daemon until SIGTERM/SIGINT; SIGHUP re-reads ``config_path``."""
    configure(config.log.format.value, config.log.level.value)
    # APScheduler logs every timer run at INFO: twice a second, forever.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    notifier = Notifier.from_env()
    os.environ.pop("NOTIFY_SOCKET", None)  # for this process only, not for workers or UDFs
    lock = lock_state_dir(config)
    tokens = ensure_tokens(config)
    sock = listen(config.api.host, config.api.port)
    host, port = sock.getsockname()[:2]
    service = Service(config)
    service.start()
    signal.signal(signal.SIGHUP, _reloader(service, config_path, notifier))
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    info: dict[str, Any] = {"pid": os.getpid(), "url": url}
    write_atomic(daemon_file(config), json.dumps(info).encode())
    server = uvicorn.Server(
        uvicorn.Config(
            gated_app(service, tokens),
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=10,
            server_header=False,
        )
    )
    log.info("api_listening", url=url, token_file=str(token_file(config)))
    threading.Thread(
        target=_supervise, args=(server, service, notifier, url), name="flowd-notify", daemon=True
    ).start()
    # uvicorn catches SIGTERM/SIGINT while it serves and, once stopped, raises them again for the
    # handlers that were there before it: with the default ones that would end the process right
    # there — no drain, no clean exit. These make the re-raised signal a no-op: the drain below is
    # what a stop signal means.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda signum, frame: None)
    try:
        server.run(sockets=[sock])
    finally:
        notifier.stopping()
        service.stop(DRAIN_S)
        with contextlib.suppress(FileNotFoundError):
            current = json.loads(daemon_file(config).read_text())
            if current.get("pid") == os.getpid():
                daemon_file(config).unlink()
        sock.close()
        os.close(lock)
