"""``/v1/models``: what is served, and how each model can be called."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from latentserve.server.engine.service import ModelDescription
from latentserve.server.frontends.rest.dependencies import Service, json_response
from latentserve.server.frontends.rest.schemas import ImageInfo, ModelInfo, ModelList, OpenAIModel

router = APIRouter(tags=["models"])


def model_info(d: ModelDescription) -> ModelInfo:
    return ModelInfo(
        name=d.name,
        version=d.version,
        family=d.family,
        description=d.description,
        capabilities=d.capabilities,
        image=ImageInfo(height=d.height, width=d.width, channels=d.channels),
        latent_shape=d.latent_shape,
        likelihood=d.likelihood,
        pipeline=d.pipeline,
        sample_parameters=d.sample_parameters,
        sample_defaults=d.sample_defaults,
        backend=d.backend,
        execution_providers=d.execution_providers,
        max_batch_size=d.max_batch_size,
        max_n=d.max_n,
        versions=d.versions,
    )


@router.get("/v1/models", response_model=ModelList)
async def list_models(service: Service) -> Response:
    described = service.list_models()
    return json_response(
        ModelList(
            models=[model_info(d) for d in described],
            data=[OpenAIModel(id=d.name, created=d.created) for d in described],
        )
    )


@router.get("/v1/models/{model}", response_model=ModelInfo)
async def get_model(service: Service, model: str) -> Response:
    return json_response(model_info(service.get_model(model)))
