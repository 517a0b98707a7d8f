"""The Open Inference Protocol (KServe V2) served end to end, driven by Triton's own client
(``tritonclient``) over real HTTP and gRPC: metadata, readiness, ``sample`` and
``reconstruct`` with binary and JSON tensors, refusals that name the bad input, and the
repository extension behind the admin token."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from helpers.server_process import ServerFactory, ServerProcess
from PIL import Image
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.slow

TOKEN = "v2-test-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
SERVER_TOML = 'admin_tokens_file = "{tokens}"\n'
SAMPLE = {"method": "sample"}


@pytest.fixture(scope="module")
def server(
    tiny_repository: Path, tmp_path_factory: pytest.TempPathFactory, start_server: ServerFactory
) -> Iterator:
    workdir = tmp_path_factory.mktemp("v2_models")
    repository = Path(shutil.copytree(tiny_repository, workdir / "models"))
    tokens = workdir / "admin-tokens"
    tokens.write_text(f"{TOKEN}\n")
    with start_server(repository, "v2", SERVER_TOML.format(tokens=tokens)) as process:
        yield process


@pytest.fixture(scope="module")
def http_client(server: ServerProcess) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(server.http_url.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def grpc_client(server: ServerProcess) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(server.grpc_url.removeprefix("grpc://"))
    yield client
    client.close()


def scalar(module, name: str, datatype: str, value, binary: bool = True):
    tensor = module.InferInput(name, [1], datatype)
    array = np.array([value], dtype=object if datatype == "BYTES" else None)
    if module is httpclient:
        tensor.set_data_from_numpy(array.astype(_numpy(datatype)), binary_data=binary)
    else:
        tensor.set_data_from_numpy(array.astype(_numpy(datatype)))
    return tensor


def _numpy(datatype: str):
    return {"INT32": np.int32, "INT64": np.int64, "FP32": np.float32, "BYTES": object}[datatype]


def v1_pixels(http: httpx.Client, route: str, body: dict) -> np.ndarray:
    """The same request's images from the /v1 API, as UINT8 [n, C, H, W]."""
    response = http.post(route, json=body)
    assert response.status_code == 200, response.text
    images = [Image.open(io.BytesIO(base64.b64decode(i))) for i in response.json()["images"]]
    return np.stack([np.asarray(i)[None] for i in images])


def test_server_and_model_metadata_and_readiness(http_client, grpc_client) -> None:
    for client in (http_client, grpc_client):
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("vae-tiny") and client.is_model_ready("vae-tiny", "1")
        assert not client.is_model_ready("vae-tiny", "9")
    meta = http_client.get_server_metadata()
    assert meta["name"] == "latentserve" and "binary_tensor_data" in meta["extensions"]
    assert "model_repository" in grpc_client.get_server_metadata().extensions

    model = http_client.get_model_metadata("vae-tiny")
    assert model["versions"] == ["1", "2"] and model["platform"] == "latentserve"
    inputs = {t["name"]: (t["datatype"], t["shape"]) for t in model["inputs"]}
    assert inputs["n"] == ("INT64", [1]) and inputs["seed"] == ("INT64", [1])
    assert inputs["temperature"] == ("FP32", [1])
    outputs = {t["name"]: (t["datatype"], t["shape"]) for t in model["outputs"]}
    assert outputs["images"] == ("UINT8", [-1, 1, 28, 28])
    assert outputs["images_png"] == ("BYTES", [-1])
    over_grpc = grpc_client.get_model_metadata("vae-tiny", as_json=True)
    assert [t["name"] for t in over_grpc["inputs"]] == [t["name"] for t in model["inputs"]]
    # ae-tiny cannot sample: its metadata describes reconstruct
    ae = http_client.get_model_metadata("ae-tiny")
    assert ae["inputs"] == [{"name": "images", "datatype": "UINT8", "shape": [-1, 1, 28, 28]}]


def test_the_model_configuration_is_the_same_over_http_and_grpc(http_client, grpc_client) -> None:
    """perf_analyzer reads Triton's model configuration before it measures (over gRPC
    through the ``ModelConfig`` RPC); both transports give the same one."""
    over_http = http_client.get_model_config("vae-tiny")
    over_grpc = grpc_client.get_model_config("vae-tiny", as_json=True)["config"]

    def tensors(config: dict, field: str) -> list[tuple]:
        return [(t["name"], t["data_type"], [int(d) for d in t["dims"]]) for t in config[field]]

    assert over_grpc["name"] == over_http["name"] == "vae-tiny"
    assert over_grpc["platform"] == over_http["platform"] == "latentserve"
    assert int(over_grpc.get("max_batch_size", 0)) == over_http["max_batch_size"] == 0
    for field in ("input", "output"):
        assert tensors(over_grpc, field) == tensors(over_http, field)
    assert ("seed", "TYPE_INT64", [1]) in tensors(over_grpc, "input")
    assert ("images_png", "TYPE_STRING", [-1]) in tensors(over_grpc, "output")
    with pytest.raises(InferenceServerException) as refused:
        grpc_client.get_model_config("no-such-model")
    assert refused.value.status() == "StatusCode.NOT_FOUND"


def test_a_grpc_infer_may_carry_tritons_empty_final_response_flag(server: ServerProcess) -> None:
    """perf_analyzer's gRPC requests carry ``triton_enable_empty_final_response`` (meaningful
    only to Triton's decoupled streams); it is accepted and has no effect, while any other
    unknown parameter is still refused by name."""
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    channel = grpc.insecure_channel(server.grpc_url.removeprefix("grpc://"))
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

    def request(**parameters: bool) -> service_pb2.ModelInferRequest:
        tensor = service_pb2.ModelInferRequest.InferInputTensor
        infer = service_pb2.ModelInferRequest(
            model_name="vae-tiny",
            inputs=[
                tensor(name="n", datatype="INT64", shape=[1], contents={"int64_contents": [1]}),
                tensor(name="seed", datatype="INT64", shape=[1], contents={"int64_contents": [3]}),
            ],
        )
        for name, value in parameters.items():
            infer.parameters[name].bool_param = value
        return infer

    answer = stub.ModelInfer(request(triton_enable_empty_final_response=False), timeout=60)
    assert [o.name for o in answer.outputs] == ["images", "seed"]
    assert list(answer.outputs[0].shape) == [1, 1, 28, 28]
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(request(colour=True), timeout=60)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "colour" in refused.value.details()
    channel.close()


def test_sample_is_the_v1_images_over_http_binary_and_json_and_grpc(
    http_client, grpc_client, http: httpx.Client
) -> None:
    expected = v1_pixels(http, "/v1/models/vae-tiny/sample", {"n": 3, "seed": 11})
    assert expected.shape == (3, 1, 28, 28)
    for binary in (True, False):
        inputs = [
            scalar(httpclient, "n", "INT32", 3, binary),
            scalar(httpclient, "seed", "INT64", 11, binary),
        ]
        outputs = [
            httpclient.InferRequestedOutput("images", binary_data=binary),
            httpclient.InferRequestedOutput("images_png"),
            httpclient.InferRequestedOutput("seed", binary_data=binary),
        ]
        result = http_client.infer("vae-tiny", inputs, outputs=outputs, parameters=SAMPLE)
        images = result.as_numpy("images")
        assert images.dtype == np.uint8 and np.array_equal(images, expected)
        assert result.as_numpy("seed").tolist() == [11]
        pngs = result.as_numpy("images_png")
        decoded = np.stack([np.asarray(Image.open(io.BytesIO(p)))[None] for p in pngs])
        assert np.array_equal(decoded, expected)
        assert result.get_response()["model_version"] == "2"

    inputs = [scalar(grpcclient, "n", "INT64", 3), scalar(grpcclient, "seed", "INT64", 11)]
    result = grpc_client.infer("vae-tiny", inputs, parameters=SAMPLE)
    assert np.array_equal(result.as_numpy("images"), expected)
    assert result.get_response().model_version == "2"

    older = http_client.infer(
        "vae-tiny", inputs=[scalar(httpclient, "seed", "INT64", 11)], model_version="1"
    )
    assert older.get_response()["model_version"] == "1"
    assert not np.array_equal(older.as_numpy("images"), expected[:1])


def test_reconstruct_takes_uint8_images(http_client, grpc_client) -> None:
    images = np.zeros((2, 1, 28, 28), dtype=np.uint8)
    images[:, :, 4:24, 12:16] = 255
    results = []
    for module, client in ((httpclient, http_client), (grpcclient, grpc_client)):
        tensor = module.InferInput("images", list(images.shape), "UINT8")
        tensor.set_data_from_numpy(images)
        result = client.infer("ae-tiny", [tensor], parameters={"method": "reconstruct"})
        results.append(result.as_numpy("images"))
    assert results[0].shape == (2, 1, 28, 28) and np.array_equal(results[0], results[1])


@pytest.mark.parametrize(
    ("inputs", "parameters", "named"),
    [
        ([("n", "FP32", 2.0)], SAMPLE, "n: datatype"),
        ([("bogus", "INT64", 1)], SAMPLE, "bogus: not an input"),
        ([("n", "INT64", 99999)], SAMPLE, "n: must be between"),
        ([("n", "INT64", 1)], {"method": "paint"}, "method: unknown method 'paint'"),
    ],
)
def test_a_bad_input_is_refused_naming_it(
    http_client, grpc_client, inputs, parameters, named
) -> None:
    with pytest.raises(InferenceServerException, match=named) as refused:
        tensors = [scalar(httpclient, *i) for i in inputs]
        http_client.infer("vae-tiny", tensors, parameters=parameters)
    assert refused.value.status() == "400"
    with pytest.raises(InferenceServerException, match=named) as refused:
        tensors = [scalar(grpcclient, *i) for i in inputs]
        grpc_client.infer("vae-tiny", tensors, parameters=parameters)
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_malformed_bodies_are_400_naming_the_part(server: ServerProcess) -> None:
    route = "/v2/models/vae-tiny/infer"
    tensor = {"name": "n", "datatype": "INT64", "shape": [1], "parameters": {"binary_data_size": 8}}
    header = json.dumps({"inputs": [tensor]}).encode()
    with httpx.Client(base_url=server.http_url) as http:
        cut = http.post(
            route,
            content=header + b"\x01\x00",
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
        assert cut.status_code == 400 and "n: binary_data_size" in cut.json()["error"]
        wrong = http.post(
            route, json={"inputs": [{"name": "n", "datatype": "INT64", "shape": [2], "data": [1]}]}
        )
        assert wrong.status_code == 400 and "n: shape [2] holds 2" in wrong.json()["error"]
        missing = http.post("/v2/models/nope/infer", json={"inputs": []})
        assert missing.status_code == 404 and "nope" in missing.json()["error"]
        assert http.post(route, content=b"{").json() == {"error": "body: not valid JSON"}


GRPC_REPOSITORY_CALL = """
import sys, grpc
from latentserve.inference import grpc_predict_v2_pb2 as pb, grpc_predict_v2_pb2_grpc as pb_grpc
address, rpc, name, token = sys.argv[1:]
stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(address))
request = getattr(pb, rpc + "Request")(model_name=name)
metadata = (("authorization", "Bearer " + token),) if token else ()
try:
    print(getattr(stub, rpc)(request, metadata=metadata, timeout=60))
except grpc.RpcError as exc:
    print(exc.code(), exc.details())
"""


def grpc_repository_call(server: ServerProcess, rpc: str, name: str, token: str = "") -> str:
    """A repository RPC through the server's own stubs, in a process of its own: they and
    tritonclient's define the same ``inference`` messages, which one process cannot load."""
    address = server.grpc_url.removeprefix("grpc://")
    args = [sys.executable, "-c", GRPC_REPOSITORY_CALL, address, rpc, name, token]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=True).stdout


def test_repository_index_load_and_unload_need_the_admin_token(
    server: ServerProcess, http_client, grpc_client
) -> None:
    with pytest.raises(InferenceServerException, match="admin call without a token") as refused:
        http_client.unload_model("ae-tiny")
    assert refused.value.status() == "401"
    with pytest.raises(InferenceServerException, match="not an admin token"):
        http_client.get_model_repository_index(headers={"Authorization": "Bearer wrong"})
    assert "UNAUTHENTICATED" in grpc_repository_call(server, "RepositoryModelUnload", "ae-tiny")
    assert http_client.is_model_ready("ae-tiny")

    index = http_client.get_model_repository_index(headers=ADMIN)
    assert {(e["name"], e["version"], e["state"]) for e in index} == {
        ("ae-tiny", "1", "READY"),
        ("vae-tiny", "1", "READY"),
        ("vae-tiny", "2", "READY"),
    }

    http_client.unload_model("ae-tiny", headers=ADMIN)
    assert not http_client.is_model_ready("ae-tiny")
    assert not grpc_client.is_model_ready("ae-tiny")
    index = http_client.get_model_repository_index(headers=ADMIN)
    assert {
        "name": "ae-tiny",
        "version": "1",
        "state": "UNAVAILABLE",
        "reason": "unloaded",
    } in index
    # a reload of the whole repository leaves an unloaded model out until it is loaded
    with httpx.Client(base_url=server.http_url, timeout=60) as http:
        reload = http.post("/v1/repository/reload", headers=ADMIN)
    assert reload.status_code == 200 and reload.json()["loaded"] == []
    assert not http_client.is_model_ready("ae-tiny")
    http_client.load_model("ae-tiny", headers=ADMIN)
    assert http_client.is_model_ready("ae-tiny")

    unloaded = grpc_repository_call(server, "RepositoryModelUnload", "vae-tiny", TOKEN)
    assert "isUnloaded: true" in unloaded
    assert not http_client.is_model_ready("vae-tiny")
    loaded = grpc_repository_call(server, "RepositoryModelLoad", "vae-tiny", TOKEN)
    assert "isLoaded: true" in loaded
    assert http_client.is_model_ready("vae-tiny", "2")
    missing = grpc_repository_call(server, "RepositoryModelLoad", "nope", TOKEN)
    assert "NOT_FOUND" in missing
    with pytest.raises(InferenceServerException, match="nope") as refused:
        http_client.load_model("nope", headers=ADMIN)
    assert refused.value.status() == "404"
