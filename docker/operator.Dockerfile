# syntax=docker/dockerfile:1.7
# The Meridian operator image: the `operator` binary (reconcilers for Release and
# Rollout, `operator crd` prints the CRDs) plus the `slo-gate` probe CLI, which the
# Buildkite staging gate runs (buildkite/slo-gate.sh) with the same probe code the
# operator's analysis uses.
#
#   docker buildx build -f docker/operator.Dockerfile -t meridian-operator:$(git rev-parse HEAD) .
#
# Runtime: distroless cc, uid 65532. Probes: the operator serves GET /healthz and
# /readyz and /metrics on $PORT (default 8080); no HEALTHCHECK (no shell in the image).

ARG RUST_VERSION=1.95
ARG DEBIAN_SUITE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_SUITE} AS build
WORKDIR /src
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --features meridian-probe/tls --bin operator --bin slo-gate \
 && install -D -m 0755 target/release/operator /out/operator \
 && install -D -m 0755 target/release/slo-gate /out/slo-gate

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="meridian-operator" \
      org.opencontainers.image.description="Meridian Release/Rollout operator and slo-gate CLI" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build --chown=root:root /out/operator /out/slo-gate /usr/local/bin/
ENV PORT=8080 \
    LOG_FORMAT=json \
    RUST_LOG=info
EXPOSE 8080
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/operator"]
