# syntax=docker/dockerfile:1
# One image for every openhpo service: the API, the coordinator, the workers and Flower (see compose.yaml).
#
#   docker build --build-arg TORCH_VARIANT=cpu  -t openhpo .   # CPU-only torch, a small image
#   docker build --build-arg TORCH_VARIANT=cuda -t openhpo .   # torch with CUDA, for GPU workers
#
# TORCH_VARIANT=cpu installs torch from PyTorch's CPU wheel index. TORCH_VARIANT=cuda installs the PyPI wheel, which
# on Linux x86_64 is the CUDA build and brings its CUDA libraries; the host needs the NVIDIA driver and the NVIDIA
# Container Toolkit. Training scripts that need more packages need an image built FROM this one.
FROM python:3.11-slim

ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first and on its own, so that the project's torch range is met by the variant chosen here.
RUN case "${TORCH_VARIANT}" in \
        cpu) pip install "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu ;; \
        cuda) pip install "torch==${TORCH_VERSION}" ;; \
        *) echo "TORCH_VARIANT must be cpu or cuda, not '${TORCH_VARIANT}'" >&2; exit 1 ;; \
    esac

WORKDIR /opt/openhpo
COPY . .
RUN pip install . \
    && useradd --create-home --uid 1000 openhpo \
    && mkdir -p /var/lib/openhpo/work /var/lib/openhpo/plugins \
    && chown -R openhpo:openhpo /var/lib/openhpo

# Trials run as this unprivileged user; their directories and the plugins live in the volumes of compose.yaml.
USER openhpo
WORKDIR /var/lib/openhpo
ENV OPENHPO_WORK_DIR=/var/lib/openhpo/work \
    OPENHPO_PLUGIN_DIR=/var/lib/openhpo/plugins
EXPOSE 8000 5555
CMD ["openhpo", "--help"]
