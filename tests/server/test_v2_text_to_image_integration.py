"""Text-to-image over the Open Inference Protocol, driven by ``tritonclient`` over real HTTP
(binary and JSON tensors) and gRPC against a live server over a tiny latent diffusion
model: the prompt goes in as a BYTES tensor and the images are those of the /v1 API."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from helpers.server_process import ServerFactory, ServerProcess
from PIL import Image
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.slow

MODEL = "ldm-tiny"
BODY = {"prompt": "a handwritten 3", "n": 2, "seed": 5, "steps": 3, "guidance_scale": 2.0}


@pytest.fixture(scope="module")
def server(text_repository: Path, start_server: ServerFactory) -> Iterator:
    with start_server(text_repository, "v2_t2i", config="") as process:
        yield process


def tensors(module, body: dict, binary: bool) -> list:
    types = {"prompt": ("BYTES", object), "n": ("INT32", np.int32), "seed": ("INT64", np.int64)}
    types |= {"steps": ("INT64", np.int64), "guidance_scale": ("FP32", np.float32)}
    made = []
    for name, value in body.items():
        datatype, dtype = types[name]
        tensor = module.InferInput(name, [1], datatype)
        array = np.array([value.encode() if isinstance(value, str) else value], dtype=dtype)
        if module is httpclient:
            tensor.set_data_from_numpy(array, binary_data=binary)
        else:
            tensor.set_data_from_numpy(array)
        made.append(tensor)
    return made


def test_metadata_declares_the_prompt_and_the_image_outputs(server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(server.http_url.removeprefix("http://"))
    meta = client.get_model_metadata(MODEL)
    inputs = {t["name"]: (t["datatype"], t["shape"]) for t in meta["inputs"]}
    assert inputs["prompt"] == ("BYTES", [1]) and inputs["negative_prompt"] == ("BYTES", [1])
    assert inputs["steps"] == ("INT64", [1]) and inputs["guidance_scale"] == ("FP32", [1])
    assert "image" not in inputs and "preview_every" not in inputs
    outputs = {t["name"]: t["shape"] for t in meta["outputs"]}
    assert outputs["images"] == [-1, 1, 28, 28]
    with pytest.raises(InferenceServerException, match="cannot sample") as refused:
        client.infer(MODEL, tensors(httpclient, {"n": 1}, True), parameters={"method": "sample"})
    assert refused.value.status() == "400"


def test_text_to_image_is_the_v1_images_over_http_and_grpc(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.http_url, timeout=120) as http:
        response = http.post(f"/v1/models/{MODEL}/text-to-image", json=BODY)
    assert response.status_code == 200, response.text
    pngs = [base64.b64decode(i) for i in response.json()["images"]]
    expected = np.stack([np.asarray(Image.open(io.BytesIO(p)))[None] for p in pngs])

    http_client = httpclient.InferenceServerClient(server.http_url.removeprefix("http://"))
    parameters = {"method": "text_to_image"}
    for binary in (True, False):
        outputs = [httpclient.InferRequestedOutput("images", binary_data=binary)]
        outputs.append(httpclient.InferRequestedOutput("images_png"))
        result = http_client.infer(
            MODEL, tensors(httpclient, BODY, binary), outputs=outputs, parameters=parameters
        )
        assert np.array_equal(result.as_numpy("images"), expected)
        assert list(result.as_numpy("images_png")) == pngs

    with grpcclient.InferenceServerClient(server.grpc_url.removeprefix("grpc://")) as client:
        result = client.infer(MODEL, tensors(grpcclient, BODY, True))  # the default method
        assert np.array_equal(result.as_numpy("images"), expected)
        assert result.as_numpy("seed").tolist() == [5]
        other = client.infer(MODEL, tensors(grpcclient, BODY | {"prompt": "a seven"}, True))
        assert not np.array_equal(other.as_numpy("images"), expected)
