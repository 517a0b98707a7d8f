from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class TensorInfo(_message.Message):
    __slots__ = ("name", "dtype", "shape")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[str]] = ...) -> None: ...

class ImageInfo(_message.Message):
    __slots__ = ("height", "width", "channels")
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    height: int
    width: int
    channels: int
    def __init__(self, height: _Optional[int] = ..., width: _Optional[int] = ..., channels: _Optional[int] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "version", "family", "description", "capabilities", "image", "latent_shape", "backend", "execution_providers", "max_batch_size", "max_n", "versions", "likelihood", "pipeline", "sample_parameters", "sample_defaults")
    class SampleDefaultsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    LATENT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_N_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    LIKELIHOOD_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_DEFAULTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    family: str
    description: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    image: ImageInfo
    latent_shape: _containers.RepeatedScalarFieldContainer[int]
    backend: str
    execution_providers: _containers.RepeatedScalarFieldContainer[str]
    max_batch_size: int
    max_n: int
    versions: _containers.RepeatedScalarFieldContainer[str]
    likelihood: str
    pipeline: str
    sample_parameters: _containers.RepeatedScalarFieldContainer[str]
    sample_defaults: _containers.ScalarMap[str, float]
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., family: _Optional[str] = ..., description: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., image: _Optional[_Union[ImageInfo, _Mapping]] = ..., latent_shape: _Optional[_Iterable[int]] = ..., backend: _Optional[str] = ..., execution_providers: _Optional[_Iterable[str]] = ..., max_batch_size: _Optional[int] = ..., max_n: _Optional[int] = ..., versions: _Optional[_Iterable[str]] = ..., likelihood: _Optional[str] = ..., pipeline: _Optional[str] = ..., sample_parameters: _Optional[_Iterable[str]] = ..., sample_defaults: _Optional[_Mapping[str, float]] = ...) -> None: ...

class SampleRequest(_message.Message):
    __slots__ = ("model", "n", "seed", "temperature", "steps", "sampler", "eta", "guidance_scale", "class_label", "preview_every", "truncation", "mix_seed", "mix_layer")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    SAMPLER_FIELD_NUMBER: _ClassVar[int]
    ETA_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    CLASS_LABEL_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_EVERY_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    MIX_SEED_FIELD_NUMBER: _ClassVar[int]
    MIX_LAYER_FIELD_NUMBER: _ClassVar[int]
    model: str
    n: int
    seed: int
    temperature: float
    steps: int
    sampler: str
    eta: float
    guidance_scale: float
    class_label: int
    preview_every: int
    truncation: float
    mix_seed: int
    mix_layer: int
    def __init__(self, model: _Optional[str] = ..., n: _Optional[int] = ..., seed: _Optional[int] = ..., temperature: _Optional[float] = ..., steps: _Optional[int] = ..., sampler: _Optional[str] = ..., eta: _Optional[float] = ..., guidance_scale: _Optional[float] = ..., class_label: _Optional[int] = ..., preview_every: _Optional[int] = ..., truncation: _Optional[float] = ..., mix_seed: _Optional[int] = ..., mix_layer: _Optional[int] = ...) -> None: ...

class SampleResponse(_message.Message):
    __slots__ = ("model", "seed", "images")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    model: str
    seed: int
    images: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, model: _Optional[str] = ..., seed: _Optional[int] = ..., images: _Optional[_Iterable[bytes]] = ...) -> None: ...

class SampleManyRequest(_message.Message):
    __slots__ = ("id", "request")
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    id: int
    request: SampleRequest
    def __init__(self, id: _Optional[int] = ..., request: _Optional[_Union[SampleRequest, _Mapping]] = ...) -> None: ...

class RequestError(_message.Message):
    __slots__ = ("code", "message", "field", "retry_after_s")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_S_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    field: str
    retry_after_s: int
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., field: _Optional[str] = ..., retry_after_s: _Optional[int] = ...) -> None: ...

class SampleManyResponse(_message.Message):
    __slots__ = ("id", "response", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: int
    response: SampleResponse
    error: RequestError
    def __init__(self, id: _Optional[int] = ..., response: _Optional[_Union[SampleResponse, _Mapping]] = ..., error: _Optional[_Union[RequestError, _Mapping]] = ...) -> None: ...

class SampleChunk(_message.Message):
    __slots__ = ("model", "seed", "offset", "images")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    model: str
    seed: int
    offset: int
    images: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, model: _Optional[str] = ..., seed: _Optional[int] = ..., offset: _Optional[int] = ..., images: _Optional[_Iterable[bytes]] = ...) -> None: ...

class Latent(_message.Message):
    __slots__ = ("shape", "values", "codes")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    CODES_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    codes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., values: _Optional[_Iterable[float]] = ..., codes: _Optional[_Iterable[int]] = ...) -> None: ...

class LatentGroup(_message.Message):
    __slots__ = ("name", "latents")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LATENTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    latents: _containers.RepeatedCompositeFieldContainer[Latent]
    def __init__(self, name: _Optional[str] = ..., latents: _Optional[_Iterable[_Union[Latent, _Mapping]]] = ...) -> None: ...

class EncodeRequest(_message.Message):
    __slots__ = ("model", "images")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    model: str
    images: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, model: _Optional[str] = ..., images: _Optional[_Iterable[bytes]] = ...) -> None: ...

class EncodeResponse(_message.Message):
    __slots__ = ("model", "latents", "groups")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LATENTS_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    model: str
    latents: _containers.RepeatedCompositeFieldContainer[Latent]
    groups: _containers.RepeatedCompositeFieldContainer[LatentGroup]
    def __init__(self, model: _Optional[str] = ..., latents: _Optional[_Iterable[_Union[Latent, _Mapping]]] = ..., groups: _Optional[_Iterable[_Union[LatentGroup, _Mapping]]] = ...) -> None: ...

class ReconstructRequest(_message.Message):
    __slots__ = ("model", "images")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    model: str
    images: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, model: _Optional[str] = ..., images: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ReconstructResponse(_message.Message):
    __slots__ = ("model", "images")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    model: str
    images: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, model: _Optional[str] = ..., images: _Optional[_Iterable[bytes]] = ...) -> None: ...

class LogProbRequest(_message.Message):
    __slots__ = ("model", "images", "samples", "seed")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    model: str
    images: _containers.RepeatedScalarFieldContainer[bytes]
    samples: int
    seed: int
    def __init__(self, model: _Optional[str] = ..., images: _Optional[_Iterable[bytes]] = ..., samples: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class LogProbResponse(_message.Message):
    __slots__ = ("model", "bits_per_dim", "bound", "samples", "seed")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BITS_PER_DIM_FIELD_NUMBER: _ClassVar[int]
    BOUND_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    model: str
    bits_per_dim: _containers.RepeatedScalarFieldContainer[float]
    bound: str
    samples: int
    seed: int
    def __init__(self, model: _Optional[str] = ..., bits_per_dim: _Optional[_Iterable[float]] = ..., bound: _Optional[str] = ..., samples: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class InterpolateRequest(_message.Message):
    __slots__ = ("model", "seed_a", "seed_b", "frames", "temperature", "steps", "guidance_scale", "class_label", "image_a", "image_b", "truncation")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SEED_A_FIELD_NUMBER: _ClassVar[int]
    SEED_B_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    CLASS_LABEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_A_FIELD_NUMBER: _ClassVar[int]
    IMAGE_B_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    model: str
    seed_a: int
    seed_b: int
    frames: int
    temperature: float
    steps: int
    guidance_scale: float
    class_label: int
    image_a: bytes
    image_b: bytes
    truncation: float
    def __init__(self, model: _Optional[str] = ..., seed_a: _Optional[int] = ..., seed_b: _Optional[int] = ..., frames: _Optional[int] = ..., temperature: _Optional[float] = ..., steps: _Optional[int] = ..., guidance_scale: _Optional[float] = ..., class_label: _Optional[int] = ..., image_a: _Optional[bytes] = ..., image_b: _Optional[bytes] = ..., truncation: _Optional[float] = ...) -> None: ...

class InterpolateFrame(_message.Message):
    __slots__ = ("model", "index", "image", "seed_a", "seed_b")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SEED_A_FIELD_NUMBER: _ClassVar[int]
    SEED_B_FIELD_NUMBER: _ClassVar[int]
    model: str
    index: int
    image: bytes
    seed_a: int
    seed_b: int
    def __init__(self, model: _Optional[str] = ..., index: _Optional[int] = ..., image: _Optional[bytes] = ..., seed_a: _Optional[int] = ..., seed_b: _Optional[int] = ...) -> None: ...

class TextToImageRequest(_message.Message):
    __slots__ = ("model", "prompt", "negative_prompt", "n", "seed", "steps", "sampler", "eta", "guidance_scale", "preview_every", "image", "strength", "mask")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    SAMPLER_FIELD_NUMBER: _ClassVar[int]
    ETA_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_EVERY_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    model: str
    prompt: str
    negative_prompt: str
    n: int
    seed: int
    steps: int
    sampler: str
    eta: float
    guidance_scale: float
    preview_every: int
    image: bytes
    strength: float
    mask: bytes
    def __init__(self, model: _Optional[str] = ..., prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., n: _Optional[int] = ..., seed: _Optional[int] = ..., steps: _Optional[int] = ..., sampler: _Optional[str] = ..., eta: _Optional[float] = ..., guidance_scale: _Optional[float] = ..., preview_every: _Optional[int] = ..., image: _Optional[bytes] = ..., strength: _Optional[float] = ..., mask: _Optional[bytes] = ...) -> None: ...

class JobRequest(_message.Message):
    __slots__ = ("sample", "text_to_image")
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    TEXT_TO_IMAGE_FIELD_NUMBER: _ClassVar[int]
    sample: SampleRequest
    text_to_image: TextToImageRequest
    def __init__(self, sample: _Optional[_Union[SampleRequest, _Mapping]] = ..., text_to_image: _Optional[_Union[TextToImageRequest, _Mapping]] = ...) -> None: ...

class JobRef(_message.Message):
    __slots__ = ("job_id", "after_event_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after_event_id: int
    def __init__(self, job_id: _Optional[str] = ..., after_event_id: _Optional[int] = ...) -> None: ...

class JobError(_message.Message):
    __slots__ = ("code", "message", "field")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    field: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., field: _Optional[str] = ...) -> None: ...

class JobAccepted(_message.Message):
    __slots__ = ("model", "seed", "params_json")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    model: str
    seed: int
    params_json: str
    def __init__(self, model: _Optional[str] = ..., seed: _Optional[int] = ..., params_json: _Optional[str] = ...) -> None: ...

class JobQueued(_message.Message):
    __slots__ = ("position",)
    POSITION_FIELD_NUMBER: _ClassVar[int]
    position: int
    def __init__(self, position: _Optional[int] = ...) -> None: ...

class JobProgress(_message.Message):
    __slots__ = ("step", "steps")
    STEP_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    step: int
    steps: int
    def __init__(self, step: _Optional[int] = ..., steps: _Optional[int] = ...) -> None: ...

class JobPreview(_message.Message):
    __slots__ = ("step", "images")
    STEP_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    step: int
    images: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, step: _Optional[int] = ..., images: _Optional[_Iterable[bytes]] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job_id", "accepted", "queued", "progress", "preview", "result", "error", "event_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    accepted: JobAccepted
    queued: JobQueued
    progress: JobProgress
    preview: JobPreview
    result: SampleResponse
    error: JobError
    event_id: int
    def __init__(self, job_id: _Optional[str] = ..., accepted: _Optional[_Union[JobAccepted, _Mapping]] = ..., queued: _Optional[_Union[JobQueued, _Mapping]] = ..., progress: _Optional[_Union[JobProgress, _Mapping]] = ..., preview: _Optional[_Union[JobPreview, _Mapping]] = ..., result: _Optional[_Union[SampleResponse, _Mapping]] = ..., error: _Optional[_Union[JobError, _Mapping]] = ..., event_id: _Optional[int] = ...) -> None: ...

class JobInfo(_message.Message):
    __slots__ = ("job_id", "model", "method", "state", "position", "step", "steps", "params_json", "created_at", "preview", "seed", "images", "error")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    model: str
    method: str
    state: str
    position: int
    step: int
    steps: int
    params_json: str
    created_at: float
    preview: _containers.RepeatedScalarFieldContainer[bytes]
    seed: int
    images: _containers.RepeatedScalarFieldContainer[bytes]
    error: JobError
    def __init__(self, job_id: _Optional[str] = ..., model: _Optional[str] = ..., method: _Optional[str] = ..., state: _Optional[str] = ..., position: _Optional[int] = ..., step: _Optional[int] = ..., steps: _Optional[int] = ..., params_json: _Optional[str] = ..., created_at: _Optional[float] = ..., preview: _Optional[_Iterable[bytes]] = ..., seed: _Optional[int] = ..., images: _Optional[_Iterable[bytes]] = ..., error: _Optional[_Union[JobError, _Mapping]] = ...) -> None: ...

class ReloadRepositoryRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RefusedVersion(_message.Message):
    __slots__ = ("model", "error")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    model: str
    error: str
    def __init__(self, model: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class ReloadRepositoryResponse(_message.Message):
    __slots__ = ("loaded", "removed", "refused")
    LOADED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    loaded: _containers.RepeatedScalarFieldContainer[str]
    removed: _containers.RepeatedScalarFieldContainer[str]
    refused: _containers.RepeatedCompositeFieldContainer[RefusedVersion]
    def __init__(self, loaded: _Optional[_Iterable[str]] = ..., removed: _Optional[_Iterable[str]] = ..., refused: _Optional[_Iterable[_Union[RefusedVersion, _Mapping]]] = ...) -> None: ...
