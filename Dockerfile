# llamad in a container, two targets:
#
#   cuda (the default): built in the CUDA devel image, run in the CUDA
#        runtime image (Ubuntu 24.04 based, several GB).
#   cpu:  built and run in Debian 12 slim with --with-cuda=no (tens of MB).
#
#   podman build -t llamad:cuda .              (or docker build; no BuildKit needed)
#   podman build --target cpu -t llamad:cpu .
#   podman build --build-arg CUDA_VERSION=12.6.3 \
#       --build-arg CUDA_ARCH="-gencode arch=compute_75,code=sm_75" -t llamad:t4 .
#
# Build arguments:
#   CUDA_VERSION  the nvidia/cuda image tag's version (default 13.0.0); the
#                 host driver must support it (nvidia-smi shows the newest)
#   CUDA_ARCH     nvcc -gencode flags, configure's --with-cuda-arch: the GPU
#                 generations to build code for.  Default sm_80 and sm_90
#                 code plus compute_90 PTX; compute_75/sm_75 for T4s,
#                 compute_89/sm_89 for L4 and RTX 40xx.
#   VERSION       the image's org.opencontainers.image.version label
#
# Both run as uid 10001 with nothing written under /: the model is mounted
# read-only at /models/model.gguf and the API keys at
# /run/secrets/llamad_api_keys (see docs/DEPLOY.md).  scripts/build-image
# makes the cpu image without a registry, from Debian packages.

ARG CUDA_VERSION=13.0.0
ARG UBUNTU=ubuntu24.04

# ---------------------------------------------------------------- build (CUDA)
FROM docker.io/nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU} AS build-cuda

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        build-essential autoconf automake libtool pkg-config \
        libmicrohttpd-dev libuv1-dev libcjson-dev libinih-dev libpcre2-dev \
 && rm -rf /var/lib/apt/lists/*

ARG CUDA_ARCH="-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90"

WORKDIR /src
COPY . .
RUN autoreconf -fi \
 && ./configure --prefix=/usr/local --sysconfdir=/usr/local/etc \
        --with-cuda=/usr/local/cuda --with-cuda-arch="$CUDA_ARCH" \
 && make -j"$(nproc)" \
 && make install DESTDIR=/out \
 && /out/usr/local/bin/llamad --version

# ---------------------------------------------------------------- build (CPU)
FROM docker.io/library/debian:12 AS build-cpu

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        build-essential autoconf automake libtool pkg-config \
        libmicrohttpd-dev libuv1-dev libcjson-dev libinih-dev libpcre2-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
RUN autoreconf -fi \
 && ./configure --prefix=/usr/local --sysconfdir=/usr/local/etc --with-cuda=no \
 && make -j"$(nproc)" \
 && make install DESTDIR=/out \
 && /out/usr/local/bin/llamad --version

# ---------------------------------------------------------------- cpu
FROM docker.io/library/debian:12-slim AS cpu

ARG VERSION=dev
LABEL org.opencontainers.image.title="llamad (CPU)" \
      org.opencontainers.image.description="HTTP inference daemon for one LLaMA-family GGUF model, CPU backend" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.documentation="docs/DEPLOY.md"

# The runtime halves of the build's -dev packages (Debian 12 names), and
# curl for HEALTHCHECK.
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        libmicrohttpd12 libuv1 libcjson1 libinih1 libpcre2-8-0 curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin llamad \
 && mkdir -p /models

COPY --from=build-cpu /out/usr/local/bin/llamad /usr/local/bin/llamad
COPY --from=build-cpu /out/usr/local/etc/llamad.conf /usr/local/etc/llamad.conf
COPY conf/llamad-entrypoint /usr/local/bin/llamad-entrypoint

USER 10001:10001
VOLUME ["/models"]
EXPOSE 8080
STOPSIGNAL SIGTERM
# start-period covers loading a large model; /health/ready is 503 until ready
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:8080/health/ready || exit 1
ENTRYPOINT ["/usr/local/bin/llamad-entrypoint"]
CMD ["--model", "/models/model.gguf"]

# ---------------------------------------------------------------- cuda (the default target)
FROM docker.io/nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU} AS cuda

ARG VERSION=dev
ARG CUDA_VERSION
LABEL org.opencontainers.image.title="llamad (CUDA)" \
      org.opencontainers.image.description="HTTP inference daemon for one LLaMA-family GGUF model, CUDA ${CUDA_VERSION} backend" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.documentation="docs/DEPLOY.md"

# The runtime halves of the build's -dev packages (Ubuntu 24.04 names),
# and curl for HEALTHCHECK.  cuBLAS and the CUDA runtime come with the image.
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        libmicrohttpd12t64 libuv1t64 libcjson1 libinih1 libpcre2-8-0 curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin llamad \
 && mkdir -p /models

COPY --from=build-cuda /out/usr/local/bin/llamad /usr/local/bin/llamad
# the CUDA backend, a module llamad opens at start (backend = auto or cuda)
COPY --from=build-cuda /out/usr/local/lib/llamad/llamad-cuda.so /usr/local/lib/llamad/llamad-cuda.so
COPY --from=build-cuda /out/usr/local/etc/llamad.conf /usr/local/etc/llamad.conf
COPY conf/llamad-entrypoint /usr/local/bin/llamad-entrypoint

USER 10001:10001
VOLUME ["/models"]
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:8080/health/ready || exit 1
ENTRYPOINT ["/usr/local/bin/llamad-entrypoint"]
CMD ["--model", "/models/model.gguf"]
