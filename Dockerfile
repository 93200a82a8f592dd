# syntax=docker/dockerfile:1
# polaris-bridge, multi-stage: a Rust build stage (librdkafka is built from source by
# rdkafka-sys and linked statically), then a slim Debian runtime running as a non-root user.
#
#   docker build -t polaris-bridge .
#   docker run --rm -v $PWD/bridge.toml:/etc/polaris-bridge/bridge.toml:ro polaris-bridge

FROM rust:1.85-bookworm AS build
# gcc, g++, make and perl come with the image; librdkafka's build also needs the zlib headers.
RUN apt-get update \
    && apt-get install -y --no-install-recommends zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY connectors connectors
COPY schemas schemas
COPY src src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin polaris-bridge \
    && cp target/release/polaris-bridge /usr/local/bin/polaris-bridge

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/polaris-bridge --shell /usr/sbin/nologin bridge \
    && mkdir -p /var/lib/polaris-bridge /etc/polaris-bridge \
    && chown bridge /var/lib/polaris-bridge
COPY --from=build /usr/local/bin/polaris-bridge /usr/local/bin/polaris-bridge
USER bridge
WORKDIR /var/lib/polaris-bridge
# The task log (store.path) must survive restarts: mount a volume here.
VOLUME ["/var/lib/polaris-bridge"]
EXPOSE 9464
# /readyz: the store is open and the consumer has its partitions.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["polaris-bridge", "health", "--url", "http://127.0.0.1:9464/readyz"]
# SIGTERM drains within dispatcher.drain_timeout, commits and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["polaris-bridge"]
CMD ["run", "--config", "/etc/polaris-bridge/bridge.toml"]
