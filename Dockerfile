# syntax=docker/dockerfile:1
#
# One image per cxrwatch service, all from this file:
#
#   docker build --target imaging  -t cxrwatch/imaging:0.1.0  .
#   (same for clinical, joiner, scorer, alerter, api)
#   docker build --target model-repository -t cxrwatch/model-repository:0.1.0 .
#
# Stages:
#   python          the pinned base (exact CPython patch release, Debian 12 slim)
#   build           installs the hash-pinned dependencies and the project's wheel
#                   into /opt/cxrwatch, a virtual environment copied whole later
#   runtime         base + that environment + an unprivileged user; no compiler,
#                   no pip cache, no source tree
#   <service>       runtime + the command, ports and health check of one service
#   model-repository  the Triton model repository, copied into a volume by an
#                   init container (deploy/docker/fill-model-repository.sh)
#
# The images run with a read-only root filesystem: the services write nothing
# but to /tmp, which Kubernetes mounts as an emptyDir.

# Exact patch release and Debian release, so a rebuild does not move silently.
# Release pipelines with registry access should add the digest
# (python:3.11.14-slim-bookworm@sha256:...) from `docker buildx imagetools inspect`.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS python
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1


FROM python AS build
WORKDIR /src
# Dependencies first: this layer is reused until a lock file changes.
COPY deploy/docker/requirements.lock deploy/docker/build-requirements.lock ./
# /opt/cxrwatch gets no pip of its own: the build environment's pip installs
# into it, so the runtime carries no installer.
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --only-binary=:all: \
        -r build-requirements.lock \
 && python -m venv --without-pip /opt/cxrwatch \
 && /opt/build/bin/pip --python /opt/cxrwatch/bin/python install \
        --require-hashes --only-binary=:all: --no-deps -r requirements.lock
# The project itself, built with the pinned backend and no network.
COPY pyproject.toml README.md ./
COPY services/ services/
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && /opt/build/bin/pip --python /opt/cxrwatch/bin/python install --no-deps \
        /wheels/cxrwatch-*.whl \
 && /opt/build/bin/pip --python /opt/cxrwatch/bin/python check


FROM python AS runtime
# A fixed uid/gid so that Kubernetes' runAsUser and the image agree. The base
# image's own installer is removed: nothing installs at run time.
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
 && groupadd --system --gid 10001 cxrwatch \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin cxrwatch
COPY --from=build /opt/cxrwatch /opt/cxrwatch
COPY deploy/docker/healthcheck.py /opt/cxrwatch-deploy/healthcheck.py
ENV PATH=/opt/cxrwatch/bin:$PATH \
    CXRWATCH_MODEL_REPOSITORY=/models
WORKDIR /tmp
USER 10001:10001
# Liveness only: readiness (/readyz) depends on Kafka, Redis and Triton and is
# for the orchestrator's routing, not for restarting the container.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/opt/cxrwatch-deploy/healthcheck.py"]


FROM runtime AS imaging
ENV CXRWATCH_HEALTH_PORT=9000
EXPOSE 9000
CMD ["python", "-m", "cxrwatch.imaging"]

FROM runtime AS clinical
ENV CXRWATCH_HEALTH_PORT=9000
EXPOSE 9000
CMD ["python", "-m", "cxrwatch.clinical"]

FROM runtime AS joiner
ENV CXRWATCH_HEALTH_PORT=9000
EXPOSE 9000
CMD ["python", "-m", "cxrwatch.joiner"]

FROM runtime AS scorer
ENV CXRWATCH_HEALTH_PORT=9000
EXPOSE 9000
CMD ["python", "-m", "cxrwatch.scorer"]

FROM runtime AS alerter
ENV CXRWATCH_HEALTH_PORT=9000
EXPOSE 9000
CMD ["python", "-m", "cxrwatch.alerter"]

FROM runtime AS api
# /healthz is on the API port itself.
ENV CXRWATCH_API_HOST=0.0.0.0 \
    CXRWATCH_API_PORT=8080
EXPOSE 8080
CMD ["python", "-m", "cxrwatch.api"]


# The model repository Triton serves and every service reads its manifest from.
# To serve another model with the same contract, put its repository folder
# under models/ and build with --build-arg MODEL_NAME=<folder>.
FROM python AS model-repository
ARG MODEL_NAME=cxr_fusion
COPY models/${MODEL_NAME}/ /model-repository/${MODEL_NAME}/
COPY --chmod=0755 deploy/docker/fill-model-repository.sh \
    /usr/local/bin/fill-model-repository
# Refuse to build an image that Triton could not load.
RUN test -f "/model-repository/${MODEL_NAME}/features.json" \
 && test -f "/model-repository/${MODEL_NAME}/config.pbtxt" \
 && ls /model-repository/${MODEL_NAME}/*/model.onnx
USER 10001:10001
ENTRYPOINT ["fill-model-repository"]
CMD ["/models"]
