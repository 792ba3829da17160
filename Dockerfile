# syntax=docker/dockerfile:1
# Build stage: release binary with the tuned profile from Cargo.toml.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
# A workspace member: cargo loads its manifest even when building only the gateway.
COPY tools ./tools
# .git is not copied: pass --build-arg STATSGATE_GIT_REVISION=$(git rev-parse HEAD) and
# STATSGATE_GIT_BRANCH for statsd_exporter_build_info; without them it reads "unknown".
ARG STATSGATE_GIT_REVISION=
ARG STATSGATE_GIT_BRANCH=
RUN cargo build --release --locked --bin statsgate \
 && strip target/release/statsgate

# Runtime stage: glibc + CA certs only, non-root.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/statsgate /usr/local/bin/statsgate
USER nonroot:nonroot
EXPOSE 9102 9125/udp 9125
ENTRYPOINT ["/usr/local/bin/statsgate"]
