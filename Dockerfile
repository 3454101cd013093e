# syntax=docker/dockerfile:1.7
# llamad in a container: the CUDA devel image builds, the CUDA runtime image
# runs.  See docs/DEPLOY.md for how to run it (NVIDIA container toolkit,
# --gpus all, a read-only root, the model mounted at /models, the API key
# as a secret).
#
#   docker build -t llamad .
#   docker build --build-arg CUDA_ARCH="-gencode arch=compute_89,code=sm_89" -t llamad .

ARG CUDA_VERSION=13.0.0
ARG UBUNTU=ubuntu24.04

# ---------------------------------------------------------------- build
FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU} AS build

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        build-essential autoconf automake libtool pkg-config \
        libmicrohttpd-dev libuv1-dev libcjson-dev libinih-dev libpcre2-dev \
 && rm -rf /var/lib/apt/lists/*

# The GPU architectures to build code for (configure's --with-cuda-arch).
ARG CUDA_ARCH="-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90"

WORKDIR /src
COPY . .
RUN autoreconf -fi \
 && ./configure --prefix=/usr/local --sysconfdir=/usr/local/etc \
        --with-cuda=/usr/local/cuda --with-cuda-arch="$CUDA_ARCH" \
 && make -j"$(nproc)" \
 && make install DESTDIR=/out \
 && /out/usr/local/bin/llamad --version

# ---------------------------------------------------------------- run
FROM nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU}

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

COPY --from=build /out/usr/local/bin/llamad /usr/local/bin/llamad
COPY --from=build /out/usr/local/etc/llamad.conf /usr/local/etc/llamad.conf

# Listen on every interface, with the API keys from a mounted secret
# (one key a line).  Without one llamad refuses to listen beyond loopback,
# unless LLAMAD_INSECURE_NO_AUTH=1 says to serve anyone who can reach the
# port.
COPY --chmod=0755 <<'EOF' /usr/local/bin/llamad-entrypoint
#!/bin/sh
set -eu
keys=${LLAMAD_API_KEY_FILE:-/run/secrets/llamad_api_keys}
if [ -r "$keys" ]; then
    exec /usr/local/bin/llamad --config /usr/local/etc/llamad.conf \
        --host 0.0.0.0 --port 8080 --api-key-file "$keys" "$@"
fi
if [ "${LLAMAD_INSECURE_NO_AUTH:-0}" = 1 ]; then
    exec /usr/local/bin/llamad --config /usr/local/etc/llamad.conf \
        --host 0.0.0.0 --port 8080 --insecure-no-auth yes "$@"
fi
echo "llamad-entrypoint: no API key file at $keys: mount one (see docs/DEPLOY.md)," \
     "or set LLAMAD_INSECURE_NO_AUTH=1 to serve every client that can reach port 8080" >&2
exit 1
EOF

USER 10001:10001
VOLUME ["/models"]
EXPOSE 8080
STOPSIGNAL SIGTERM
# start-period covers loading a large model; /health is 503 until ready
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:8080/health || exit 1

ENTRYPOINT ["/usr/local/bin/llamad-entrypoint"]
CMD ["--model", "/models/model.gguf"]
