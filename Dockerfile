# mario-server image. CPU by default:
#   docker build -t mario .
#   docker run -p 8080:8080 mario
# CUDA (candle's `cuda` feature; needs the NVIDIA container runtime at run time):
#   docker build -t mario:cuda --build-arg FEATURES=cuda \
#     --build-arg BUILD_IMAGE=nvidia/cuda:13.0.0-devel-ubuntu24.04 \
#     --build-arg RUNTIME_IMAGE=nvidia/cuda:13.0.0-runtime-ubuntu24.04 .
#   docker run --gpus all -p 8080:8080 -e MARIO_DEVICE=cuda mario:cuda
ARG BUILD_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${BUILD_IMAGE} AS build
ARG FEATURES=""
ARG CUDA_COMPUTE_CAP=90
ENV CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP}
# CUDA base images have no Rust toolchain
RUN command -v cargo >/dev/null 2>&1 || ( \
      apt-get update && apt-get install -y --no-install-recommends curl ca-certificates build-essential pkg-config && \
      curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal && rm -rf /var/lib/apt/lists/* )
ENV PATH=/root/.cargo/bin:${PATH}
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin mario-server ${FEATURES:+--features ${FEATURES}} && \
    strip target/release/mario-server

FROM ${RUNTIME_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && \
    rm -rf /var/lib/apt/lists/* && \
    useradd --create-home --uid 10001 mario
COPY --from=build /src/target/release/mario-server /usr/local/bin/mario-server
COPY --from=build /src/models /opt/mario/models
WORKDIR /opt/mario
USER mario
ENV MARIO_HOST=0.0.0.0 \
    MARIO_PORT=8080 \
    MARIO_MODEL=/opt/mario/models/default
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/health || exit 1
ENTRYPOINT ["mario-server"]
