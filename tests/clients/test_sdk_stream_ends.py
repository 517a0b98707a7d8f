"""An event stream that ends before the job's ``result`` or ``error`` (a proxy timing out,
a server going away) raises ``UnavailableError`` on both transports, after the events that
did arrive: a caller never mistakes a cut-off stream for a finished job. The servers here
are minimal stand-ins on loopback that cut every stream short."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
from latentserve.clients import Accepted, GrpcClient, Progress, RestClient, UnavailableError
from latentserve.v1 import generative_pb2 as pb
from latentserve.v1 import generative_pb2_grpc as pb_grpc

JOB = "0" * 32
CUT_SHORT = (
    f'event: accepted\ndata: {{"job_id":"{JOB}","model":"m@1","seed":7}}\n\n'
    'event: progress\ndata: {"step":1,"steps":10}\n\n'
)


class CutShortSSE(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        body = CUT_SHORT.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class CutShortGrpc(pb_grpc.GenerativeServiceServicer):
    def WatchJob(self, request: pb.JobRef, context: grpc.ServicerContext) -> Iterator:  # noqa: N802
        accepted = pb.JobAccepted(model="m@1", seed=7, params_json="{}")
        yield pb.JobEvent(job_id=request.job_id, accepted=accepted)
        yield pb.JobEvent(job_id=request.job_id, progress=pb.JobProgress(step=1, steps=10))


@pytest.fixture
def rest_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), CutShortSSE)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def grpc_target() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_GenerativeServiceServicer_to_server(CutShortGrpc(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


def follow(client: RestClient | GrpcClient) -> tuple[list, UnavailableError]:
    events = []
    with client, pytest.raises(UnavailableError) as ended:
        for event in client.watch_job(JOB):
            events.append(event)
    return events, ended.value


def test_a_rest_event_stream_that_ends_early_raises_unavailable(rest_url: str) -> None:
    events, error = follow(RestClient(rest_url, timeout=10))
    assert [type(e) for e in events] == [Accepted, Progress]
    assert "ended before the job did" in str(error)


def test_a_grpc_event_stream_that_ends_early_raises_unavailable(grpc_target: str) -> None:
    events, error = follow(GrpcClient(grpc_target, timeout=10))
    assert [type(e) for e in events] == [Accepted, Progress]
    assert "ended before the job did" in str(error)
