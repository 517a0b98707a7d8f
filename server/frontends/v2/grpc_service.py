"""gRPC ``inference.GRPCInferenceService``: the Open Inference Protocol's gRPC binding.

Inputs come as ``raw_input_contents`` (one entry per input) or as typed ``contents``;
outputs always go back as ``raw_output_contents``, as Triton sends them. The method is the
request parameter ``method`` (a string parameter); errors map to status codes through the
table every gRPC frontend shares, with the offending field in trailing metadata.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import json_format
from latentserve.inference import grpc_predict_v2_pb2 as pb
from latentserve.inference import grpc_predict_v2_pb2_grpc as pb_grpc
from latentserve.server.engine import deadlines
from latentserve.server.engine.service import GenerativeService
from latentserve.server.errors import InvalidArgument, ModelNotFound, ServingError, Unavailable
from latentserve.server.frontends.status import error_metadata, grpc_status
from latentserve.server.frontends.v2 import methods, tensors
from latentserve.server.frontends.v2.server_info import server_metadata
from latentserve.server.frontends.v2.tensors import Tensor
from latentserve.server.security.admin import AdminTokens
from latentserve.server.security.grpc_guard import method_name
from latentserve.server.security.grpc_limits import Refuse

PROTOCOL = "v2-grpc"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
# The typed ``contents`` field of each element type.
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_PARAMETERS = ("method",)
# Set by Triton's gRPC clients (perf_analyzer) on every request; it matters only to Triton's
# decoupled streams, so a unary ModelInfer accepts it and it changes nothing.
_TRITON_CLIENT_PARAMETERS = ("triton_enable_empty_final_response",)


#: The names refusals are counted under (the requests' ``method`` label).
CALLS: set[str] = set()


def _rpc(method: str) -> Callable:
    """Map one RPC's domain errors to its status (through the shared table), counted once."""
    CALLS.add(method)

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        async def handler(self: InferenceServicer, request: Any, context: Any) -> Any:
            deadlines.begin(context.time_remaining())
            try:
                return await fn(self, request, context)
            except ServingError as exc:
                await _abort(self._service, context, method, request, exc)

        return handler

    return wrap


async def _abort(
    service: GenerativeService, context: Any, method: str, request: Any, exc: ServingError
) -> None:
    """End the call with ``exc``'s status (through the shared table), counted once."""
    if not exc.recorded:
        ref = _ref(_model_name(request), _model_version(request))
        service.record_rejection(ref, method, PROTOCOL, exc.code)
    await context.abort(grpc_status(exc), exc.message, trailing_metadata=error_metadata(exc))


def _model_name(request: Any) -> str:
    for field in ("model_name", "name"):
        if hasattr(request, field):
            return getattr(request, field)
    return ""


def _model_version(request: Any) -> str:
    return getattr(request, "model_version", "") or getattr(request, "version", "")


def _ref(name: str, version: str) -> str:
    return f"{name}@{version}" if version else name


def _parameter(value: pb.InferParameter) -> object:
    return getattr(value, value.WhichOneof("parameter_choice") or "string_param")


def _inputs(request: pb.ModelInferRequest) -> dict[str, Tensor]:
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidArgument(
            "raw_input_contents",
            f"holds {len(raw)} entries for {len(request.inputs)} inputs",
        )
    inputs: dict[str, Tensor] = {}
    for i, entry in enumerate(request.inputs):
        name, datatype, shape = tensors.check_header(entry.name, entry.datatype, list(entry.shape))
        if name in inputs:
            raise InvalidArgument(name, "sent twice")
        if raw:
            inputs[name] = tensors.from_raw(name, datatype, shape, raw[i])
        else:
            values = list(getattr(entry.contents, _CONTENTS[datatype]))
            inputs[name] = tensors.from_values(name, datatype, shape, values)
    return inputs


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, service: GenerativeService, admins: AdminTokens) -> None:
        self._service = service
        self._admins = admins

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self._service.ready)

    @_rpc("v2_model_ready")
    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> Any:
        """Not ready, rather than an error, for a model or version that is not served."""
        try:
            self._service.get_model(_ref(request.name, request.version))
        except (ModelNotFound, Unavailable):
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=self._service.ready)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Any) -> Any:
        return pb.ServerMetadataResponse(**server_metadata())

    @_rpc("v2_model_metadata")
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> Any:
        model = self._service.get_model(_ref(request.name, request.version))
        meta = methods.metadata(model)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[tensor(**t) for t in meta["inputs"]],
            outputs=[tensor(**t) for t in meta["outputs"]],
        )

    @_rpc("v2_model_config")
    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Any) -> Any:
        model = self._service.get_model(_ref(request.name, request.version))
        config = json_format.ParseDict(methods.model_config(model), pb.ModelConfig())
        return pb.ModelConfigResponse(config=config)

    @_rpc("v2_infer")
    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> Any:
        unknown = sorted(set(request.parameters) - {*_PARAMETERS, *_TRITON_CLIENT_PARAMETERS})
        if unknown:
            raise InvalidArgument(unknown[0], "not a request parameter here (known: method)")
        method = None
        if "method" in request.parameters:
            method = _parameter(request.parameters["method"])
        outcome = await methods.infer(
            self._service,
            _ref(request.model_name, request.model_version),
            method,
            _inputs(request),
            [o.name for o in request.outputs],
            PROTOCOL,
        )
        response = pb.ModelInferResponse(
            model_name=outcome.name, model_version=outcome.version, id=request.id
        )
        for tensor in outcome.outputs:
            response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
            response.raw_output_contents.append(tensors.to_raw(tensor))
        return response

    def _check_admin(self, context: Any) -> None:
        metadata = dict(context.invocation_metadata() or ())
        self._admins.check(metadata.get("authorization"))

    @_rpc("v2_repository_load")
    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Any
    ) -> Any:
        self._check_admin(context)
        if not request.model_name:
            raise InvalidArgument("model_name", "name the model to load")
        await self._service.load_model(request.model_name, PROTOCOL)
        return pb.RepositoryModelLoadResponse(model_name=request.model_name, isLoaded=True)

    @_rpc("v2_repository_unload")
    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Any
    ) -> Any:
        self._check_admin(context)
        if not request.model_name:
            raise InvalidArgument("model_name", "name the model to unload")
        await self._service.unload_model(request.model_name, PROTOCOL)
        return pb.RepositoryModelUnloadResponse(model_name=request.model_name, isUnloaded=True)


#: Liveness and readiness probes: answered under overload and without a token.
PROBES = (f"/{SERVICE_NAME}/ServerLive", f"/{SERVICE_NAME}/ServerReady")


def overload_refusal(service: GenerativeService) -> Refuse:
    """How this service refuses a call past the gRPC concurrency limit it shares."""
    return functools.partial(_abort, service)


def add_inference_service(
    server: grpc.aio.Server, service: GenerativeService, admins: AdminTokens | None = None
) -> None:
    """Serve ``inference.GRPCInferenceService`` on ``server`` (before it starts)."""
    servicer = InferenceServicer(service, admins if admins is not None else AdminTokens())
    rpcs = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods
    service.metrics.allow_methods([*CALLS, *(method_name(rpc.name) for rpc in rpcs)])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
