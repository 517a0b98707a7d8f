"""Sort a sampling profile's stacks into the parts of serving a request.

``py-spy record --gil --threads -f raw`` writes one line per distinct stack: frames from
the root to the leaf joined by ``;`` and a sample count. Each stack is charged to one part:
walking from the leaf towards the root, the first frame that is not generic plumbing
(asyncio, contextlib, threading, ...) decides, by the first rule it matches. So time in
``asyncio.timeouts`` opened by the deadline code counts as admission, and a ``pydantic``
call made while parsing counts as parsing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

#: Rules in order: (part, substrings of a frame ``function (file:line)``). First match wins.
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("graph (ONNX Runtime)", ("onnxruntime/", "runtime.py")),
    ("PNG encoding", ("PIL/", "batch_to_pngs", "encode_png", "batch_to_pixels", "zlib")),
    ("noise", ("pipelines/noise.py", ".randomness (", ".draw (")),
    ("metrics", ("prometheus_client/", "server/metrics.py")),
    (
        "admission, limits, interceptors",
        (
            "server/security/",
            "draining.py",
            "fastapi/_body_limit.py",
            "engine/deadlines.py",
            "client_deadline",
            "heavy_work.py",
            "disconnect.py",
        ),
    ),
    ("batcher", ("engine/batcher.py",)),
    ("job", ("engine/jobs.py", "uuid.py", "_sample_result")),
    (
        "parsing",
        ("json/decoder.py", "json/__init__.py", "server/params.py", "Request.body", "Request.json")
        + ("pipelines/base.py", "pipelines/latent_decoder.py", "params_for", "_request_params"),
    ),
    (
        "response building",
        ("json_response", "b64 (", "base64", "starlette/responses.py", "model_dump_json")
        + ("_reply", "protobuf", "SampleResponse"),
    ),
    ("FastAPI telemetry hooks", ("fastapi/telemetry", "opentelemetry", "trace/__init__", "_logs/")),
    ("routing, middleware, DI", ("starlette/", "fastapi/", "anyio/", "pydantic/")),
    ("transport", ("uvicorn/", "httptools", "h11/", "grpc/", "cygrpc")),
    ("service glue", ("server/engine/", "server/frontends/", "server/pipelines/")),
    ("event loop", ("Runner.run", "uvloop/", "asyncio/")),
)

#: Plumbing frames skipped when looking for the part a stack belongs to.
GENERIC = (
    "asyncio/",
    "contextlib.py",
    "threading.py",
    "weakref.py",
    "functools.py",
    "typing.py",
    "dataclasses.py",
    "abc.py",
    "enum.py",
    "<frozen",
    "queue.py",
    "concurrent/futures/",
    "copy.py",
    "numpy/",
)
#: Leaves that mean the thread waits (only seen without ``--gil``).
IDLE_LEAVES = ("Condition.wait", "_worker (concurrent/futures/thread.py:81)")
OTHER = "other"


def part_of(frames: list[str]) -> str:
    """The part one stack (root first) is charged to."""
    if frames and frames[-1].startswith("Runner.run"):
        return "event loop"  # the loop's own C code (uvloop: I/O, callbacks) under asyncio.run
    fallback = None
    for frame in reversed(frames):
        if frame.startswith("thread ("):
            break
        generic = any(marker in frame for marker in GENERIC)
        for part, markers in RULES:
            if any(marker in frame for marker in markers):
                if not generic:
                    return part
                fallback = fallback or part
                break
    return fallback or OTHER


def parse_raw(lines: Iterable[str]) -> list[tuple[str, list[str], int]]:
    """``(thread, frames, samples)`` of each line of py-spy's raw output."""
    stacks = []
    for line in lines:
        line = line.rstrip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread = frames[0] if frames[0].startswith("thread (") else ""
        stacks.append((thread, frames, int(count)))
    return stacks


def parts(lines: Iterable[str]) -> Counter[str]:
    """Samples per part, idle waits left out."""
    counts: Counter[str] = Counter()
    for _thread, frames, count in parse_raw(lines):
        if frames and any(frames[-1].startswith(leaf) for leaf in IDLE_LEAVES):
            continue
        counts[part_of(frames)] += count
    return counts


def thread_group(thread: str) -> str:
    """``loop`` (the main thread), ``graph`` (batch workers) or ``other`` threads."""
    if "MainThread" in thread:
        return "loop"
    if "batch-" in thread:
        return "graph"
    return "other"
