# syntax=docker/dockerfile:1
# One image for every dialfleet role. The command picks the binary:
#   docker run dialfleet api-gateway            (the default)
#   docker run dialfleet api-gateway migrate
#   docker run dialfleet ingest-worker | scheduler | dial-worker | carrier-sim
#
# Stages: chef (the toolchain + cargo-chef) -> planner (a recipe of the workspace's dependency
# graph, which changes only when a Cargo.toml or Cargo.lock does) -> builder (dependencies built
# from the recipe in their own cached layer, then the workspace) -> runtime (slim, non-root).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
RUN cargo install cargo-chef --locked --version ^0.1
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# The dependency layer: rebuilt only when the recipe (the manifests and lock file) changes.
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --workspace --bins \
 && mkdir -p /out \
 && find target/release -maxdepth 1 -type f -executable -exec cp {} /out/ \; \
 && ls /out

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates: carriers and webhook receivers are reached over HTTPS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 dialfleet \
 && useradd --system --uid 10001 --gid dialfleet --no-create-home --shell /usr/sbin/nologin dialfleet
COPY --from=builder /out/ /usr/local/bin/
COPY deploy/docker/entrypoint.sh /usr/local/bin/dialfleet-entrypoint
# Roles listen on all interfaces inside a container (their defaults are loopback, for laptops).
ENV GATEWAY_ADDR=0.0.0.0:8080 \
    HEALTH_ADDR=0.0.0.0:8081 \
    LOG_FORMAT=json \
    RUST_LOG=info
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/dialfleet-entrypoint"]
CMD ["api-gateway"]
