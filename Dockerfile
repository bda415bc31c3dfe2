# syntax=docker/dockerfile:1
# The operator image: a release build in a Rust image, copied onto a
# distroless base that runs as a non-root user (uid 65532).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY tests/controlplane/kwok-stages.yaml ./tests/controlplane/kwok-stages.yaml
RUN cargo build --release --locked --bin multiregion && strip target/release/multiregion

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="multiregion" \
      org.opencontainers.image.description="Runs one application across several Kubernetes clusters and fails traffic over when a region fails"
COPY --from=build /src/target/release/multiregion /usr/local/bin/multiregion
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/multiregion"]
CMD ["run"]
