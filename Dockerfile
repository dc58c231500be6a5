# The platform image used by compose.yaml (gateway, initializer and invokers share it).
# Needs a registry for the base image; on an air-gapped machine use `ft up` instead.
FROM python:3.11-slim
WORKDIR /opt/funtainer
COPY pyproject.toml README.md ./
COPY bus bus
COPY gateway gateway
COPY initializer initializer
COPY invoker invoker
COPY cli cli
COPY runtimes runtimes
RUN pip install --no-cache-dir .
ENTRYPOINT ["ft"]
