"""Several serving processes on one pair of ports (``workers`` > 1): their parent.

One server is one asyncio loop under one GIL, and the Python it runs per request is what
bounds its throughput. Each worker here is a whole server (``app.serve``: its own loop,
batchers and graph sessions) listening on the same HTTP and gRPC ports with SO_REUSEPORT,
so the kernel spreads the connections over them. What a client sees of one worker it sees
of all: jobs through the shared job store (hence ``job_store = "redis"``), metrics merged
by prometheus_client's multiprocess mode in a fresh folder for each run.

The parent serves nothing. It reserves the ports first (port 0 becomes one free port,
bound with SO_REUSEPORT and held, never listening, so the kernel sends it no connection),
starts the workers by ``spawn`` (a fork would copy gRPC's threads), writes the port file
once every worker is ready, passes SIGTERM/SIGINT on (each worker drains as one server
does) and returns what they returned. A worker that dies on its own is not restarted: the
parent stops the others and exits 1, leaving restarts to the supervisor (systemd,
Kubernetes), which sees the failure, instead of hiding a crash loop behind workers that
still answer ready.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from pathlib import Path

from latentserve.server.app import bind_port, run, write_ports
from latentserve.server.metrics import MULTIPROC_DIR_ENV
from latentserve.server.repository.store import GraphOpener
from latentserve.server.settings import Settings

log = logging.getLogger(__name__)

#: How long the workers have to drain and exit once told to stop, past their own drain.
_STOP_GRACE_S = 30.0


def run_workers(settings: Settings, port_file: Path | None, opener: GraphOpener) -> int:
    """Serve with ``settings.workers`` processes until SIGTERM/SIGINT; 0 when every worker
    stopped cleanly, 1 when one failed or died."""
    if not settings.repository.is_dir():  # said once, not by every worker
        raise FileNotFoundError(f"model repository not found: {settings.repository}")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with ExitStack() as stack:
        http_port = stack.enter_context(_reserved(settings.host, settings.http_port, "HTTP"))
        grpc_port = stack.enter_context(_reserved(settings.host, settings.grpc_port, "gRPC"))
        metrics_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="latentserve-"))
        os.environ[MULTIPROC_DIR_ENV] = metrics_dir  # inherited by the workers
        stack.callback(os.environ.pop, MULTIPROC_DIR_ENV, None)
        shared = settings.model_copy(update={"http_port": http_port, "grpc_port": grpc_port})
        context = multiprocessing.get_context("spawn")
        ready = [context.Event() for _ in range(settings.workers)]
        workers = [
            context.Process(
                target=_worker,
                args=(shared, opener, index, ready[index], logging.getLogger().level),
                name=f"latentserve-worker-{index}",
            )
            for index in range(settings.workers)
        ]
        for worker in workers:
            worker.start()
        log.info("started %d workers on HTTP %d, gRPC %d", len(workers), http_port, grpc_port)
        code = _supervise(workers, ready, stop, port_file, (http_port, grpc_port))
    return code


def _supervise(
    workers: list[BaseProcess],
    ready: list[Event],
    stop: threading.Event,
    port_file: Path | None,
    ports: tuple[int, int],
) -> int:
    announced = False
    while not stop.is_set():
        ended = wait([w.sentinel for w in workers], timeout=0.1)
        if ended:
            dead = next(w for w in workers if w.sentinel in ended)
            dead.join()  # reaps it: its exit code is known only then
            log.error("worker %s exited (code %s): stopping the others", dead.name, dead.exitcode)
            _stop(workers)
            return 1
        if not announced and all(event.is_set() for event in ready):
            if port_file is not None:
                write_ports(port_file, *ports)
            log.info("all %d workers ready", len(workers))
            announced = True
    log.info("stopping: each worker drains what it accepted")
    codes = _stop(workers)
    # A worker the SIGTERM reached before it could take the signal over (still starting)
    # stopped as asked, too.
    return 0 if all(code in (0, -signal.SIGTERM) for code in codes) else 1


def _stop(workers: list[BaseProcess]) -> list[int | None]:
    """SIGTERM to every live worker, then their exit codes (SIGKILL past the grace)."""
    for worker in workers:
        if worker.is_alive() and worker.pid is not None:
            os.kill(worker.pid, signal.SIGTERM)
    for worker in workers:
        worker.join(_STOP_GRACE_S)
        if worker.is_alive():
            log.error("worker %s did not stop in time: killed", worker.name)
            worker.kill()
            worker.join()
    return [worker.exitcode for worker in workers]


@contextmanager
def _reserved(host: str, port: int, protocol: str) -> Iterator[int]:
    """Hold ``port`` (a free one for 0) for the workers, which bind it beside this socket."""
    sock = bind_port(host, port, protocol, shared=True)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def _worker(
    settings: Settings, opener: GraphOpener, index: int, ready: Event, log_level: int
) -> None:
    """One worker's process: a whole server on the shared ports."""
    logging.basicConfig(
        level=log_level,
        format=f"%(asctime)s %(levelname)s worker-{index} %(name)s: %(message)s",
    )
    run(settings, opener=opener, worker=index, on_ready=ready.set)
