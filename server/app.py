"""Composition root: settings -> repository -> service -> REST (with the OpenAI Images API)
+ gRPC, in one process.

Both ports also speak the Open Inference Protocol (``frontends/v2``): its routes join the
REST app and its service the gRPC server, under the same security.

Both transports share one asyncio loop (uvloop when installed). The listeners open first so
liveness probes answer while models load; readiness (``/readyz``, gRPC health) turns on
only once every model is loaded. SIGTERM/SIGINT turn readiness off and refuse new work
(REST 503, gRPC UNAVAILABLE) while what was accepted drains; jobs still running at the
drain deadline end failed, ``unavailable``, and their watchers are told; then the
listeners close and the batchers stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import grpc
import uvicorn
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection
from latentserve.server import tracing
from latentserve.server.engine.service import GenerativeService
from latentserve.server.frontends.grpc.servicer import SERVICE_NAME, create_grpc_server
from latentserve.server.frontends.grpc_tracing import TraceContext
from latentserve.server.frontends.v2 import grpc_service as v2_grpc
from latentserve.server.gpu_metrics import register_gpu_metrics
from latentserve.server.http_app import create_http_app, http_refusals
from latentserve.server.metrics import ServerMetrics, multiprocess_scrape
from latentserve.server.repository.runtime import open_graph
from latentserve.server.repository.store import GraphOpener
from latentserve.server.security import auth, cors, tls
from latentserve.server.security.admin import AdminTokens
from latentserve.server.security.grpc_limits import DrainGate
from latentserve.server.security.http_limits import http_options
from latentserve.server.settings import Settings
from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

_HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
#: How long the transports stay open past the drain, for the final events of the jobs it
#: failed to reach their watchers.
FINAL_EVENTS_S = 2.0


class _UvicornServer(uvicorn.Server):
    # Signals belong to the composition root, which must also drain gRPC before exiting.
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


async def serve(
    settings: Settings,
    registry: CollectorRegistry | None = None,
    port_file: Path | None = None,
    opener: GraphOpener = open_graph,
    worker: int | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT, then drain and return. ``port_file`` receives the ports
    actually listened on (port 0 in the settings picks a free one) as soon as both listen;
    ``opener`` opens the graph files (tests inject one to hold loading until they let it
    go on). ``worker`` is this process's index when several share the ports (``workers.py``),
    and ``on_ready`` is called once every model is loaded."""
    if not settings.repository.is_dir():
        raise FileNotFoundError(f"model repository not found: {settings.repository}")
    tracer_provider = tracing.configure_from_environment()  # off unless OTEL_* ask
    metrics = ServerMetrics(registry or CollectorRegistry(), multiprocess_scrape(), worker)
    register_gpu_metrics(metrics.scrape)  # absent (one log line) where NVML is not
    service = GenerativeService(settings, metrics, opener=opener)
    server_tls = tls.server_tls(settings)
    authenticator = auth.BearerAuth.from_settings(settings, service.metrics)
    health_servicer = health.aio.HealthServicer()
    admins = AdminTokens.from_file(settings.admin_tokens_file)
    drain_gate = DrainGate(answered=(_HEALTH_SERVICE, reflection.SERVICE_NAME))
    traced = (TraceContext(),) if tracing.enabled() else ()
    interceptors = (*traced, *auth.grpc_interceptors(authenticator), drain_gate)
    grpc_server = create_grpc_server(
        service,
        health_servicer,
        interceptors,
        admins,
        limited={v2_grpc.SERVICE_NAME: v2_grpc.overload_refusal(service)},
        unlimited=v2_grpc.PROBES,
    )
    v2_grpc.add_inference_service(grpc_server, service, admins)
    address = f"{settings.host}:{settings.grpc_port}"
    try:
        grpc_port = tls.add_grpc_port(grpc_server, address, server_tls)
    except RuntimeError as exc:
        raise ValueError(f"cannot listen for gRPC on {address}: port in use?") from exc
    refusals = http_refusals()
    rest_app = create_http_app(service, admins, refusals)
    auth.protect_rest(rest_app, authenticator, refusals)
    cors.allow_cross_origin(rest_app, settings)  # outermost: preflights need no token
    config = uvicorn.Config(
        rest_app,
        host=settings.host,
        port=settings.http_port,
        **http_options(settings),
        lifespan="off",
        access_log=False,
        log_level="warning",
        # the grace past the drain, for the final events of the jobs it failed
        timeout_graceful_shutdown=FINAL_EVENTS_S,  # type: ignore[arg-type]
        **(server_tls.uvicorn_options() if server_tls else {}),
    )
    http_server = _UvicornServer(config)
    http_socket = bind_port(settings.host, settings.http_port, "HTTP", shared=settings.workers > 1)
    http_socket.listen(config.backlog)  # connections queue from now, before uvicorn runs

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    # grpc_health reports the server as a whole SERVING unless told otherwise: not while loading
    await _set_health(health_servicer, health_pb2.HealthCheckResponse.NOT_SERVING)
    await grpc_server.start()
    http_task = asyncio.create_task(http_server.serve(sockets=[http_socket]))
    if port_file is not None:
        write_ports(port_file, http_socket.getsockname()[1], grpc_port)
    try:
        await _load(service, health_servicer, stop)
        if not stop.is_set():
            if on_ready is not None:
                on_ready()
            log.info(
                "ready: %s://%s:%d (REST, docs at /docs)  grpc%s %s:%d",
                "https" if server_tls else "http",
                settings.host,
                http_socket.getsockname()[1],
                " (TLS)" if server_tls else "",
                settings.host,
                grpc_port,
            )
        await _wait_first(stop.wait(), http_task)
    finally:
        log.info("shutting down: draining accepted requests")
        service.start_draining()  # readiness off; REST refuses new requests with 503
        drain_gate.start()
        await health_servicer.enter_graceful_shutdown()
        ended = await service.drain(settings.drain_timeout_s)
        http_server.should_exit = True
        await _stop_grpc(grpc_server, drain_gate)
        await asyncio.gather(http_task, return_exceptions=True)
        await service.close()
        summary = service.metrics.shutdown_summary()
        log.info("stopped: %s; jobs ended by the shutdown: %d", summary, ended)
        if tracer_provider is not None:
            await asyncio.to_thread(tracer_provider.shutdown)  # exports what is buffered


async def _stop_grpc(grpc_server: grpc.aio.Server, drain_gate: DrainGate) -> None:
    """Shut gRPC down after the drain so that no call the server did not accept is
    cancelled: the calls held by ``drain_gate`` are refused with UNAVAILABLE once core's
    shutdown has begun, and started calls (the final events of jobs the drain failed) get
    FINAL_EVENTS_S to end."""
    await drain_gate.quiet(period_s=0.25, at_most_s=FINAL_EVENTS_S)
    stopping = asyncio.ensure_future(grpc_server.stop(grace=FINAL_EVENTS_S))
    # The stop task's first step (core's shutdown call) runs before this one resumes.
    await asyncio.sleep(0)
    drain_gate.release()
    await stopping


async def _load(
    service: GenerativeService, health_servicer: health.aio.HealthServicer, stop: asyncio.Event
) -> None:
    loading = asyncio.create_task(service.load())
    await _wait_first(loading, stop.wait())
    if loading.done():
        loading.result()  # a broken repository stops the server with its error
        await _set_health(health_servicer, health_pb2.HealthCheckResponse.SERVING)
    else:
        loading.cancel()


async def _set_health(health_servicer: health.aio.HealthServicer, status: int) -> None:
    for name in ("", SERVICE_NAME):  # the server as a whole, and the generative service
        await health_servicer.set(name, status)


async def _wait_first(*aws: object) -> None:
    tasks = [a if isinstance(a, asyncio.Future) else asyncio.ensure_future(a) for a in aws]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        if task not in aws:
            task.cancel()
    for task in done:
        task.result()


def bind_port(host: str, port: int, protocol: str, shared: bool = False) -> socket.socket:
    """Bound here, not by uvicorn, so a busy port is a clear error instead of a sys.exit.
    ``shared``: with SO_REUSEPORT, for the workers of one server (the kernel spreads the
    connections over their listening sockets)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ValueError(f"cannot listen for {protocol} on {host}:{port}: {exc.strerror}") from exc
    return sock


def write_ports(path: Path, http_port: int, grpc_port: int) -> None:
    """The ports served, as JSON: written whole then renamed, so a reader polling for the
    file never sees half of it."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"http": http_port, "grpc": grpc_port}))
    partial.replace(path)


def run(
    settings: Settings,
    port_file: Path | None = None,
    opener: GraphOpener = open_graph,
    worker: int | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Blocking entry point: one event loop (uvloop when available) for both transports."""
    main = serve(settings, port_file=port_file, opener=opener, worker=worker, on_ready=on_ready)
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)
