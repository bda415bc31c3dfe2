# The operator image: a release build, copied onto a distroless base that
# runs as a non-root user (uid 65532).
#
# Online, as it is:
#   docker build -t multiregion:dev .
# compiles the workspace in the public Rust image and runs on distroless.
#
# Without a registry, the base images are build arguments (kind-config/images.sh
# makes both with debootstrap): BUILDER_IMAGE any image with a shell,
# RUNTIME_IMAGE a base with the C runtime, and PREBUILT_BINARY the path, in
# the build context, of a `cargo build --release --bin multiregion` made on
# the host, which the build stage then takes instead of compiling:
#   docker build -f Dockerfile --build-arg BUILDER_IMAGE=... --build-arg RUNTIME_IMAGE=... \
#     --build-arg PREBUILT_BINARY=multiregion DIR_WITH_THE_BINARY
#
# No BuildKit-only syntax, so the legacy builder (which needs no frontend
# image from a registry) builds it too.
ARG BUILDER_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILDER_IMAGE} AS build
ARG PREBUILT_BINARY=
WORKDIR /src
# The whole build context (.dockerignore keeps target/, docs and charts out):
# Cargo.toml, Cargo.lock and every crate of the workspace, wherever they live.
COPY . .
# Compiling needs make too (jemalloc, the operator's allocator, is built
# with it; the slim Rust image has gcc but not make).
RUN set -eu; \
    if [ -n "${PREBUILT_BINARY}" ]; then \
      install -D -m 0755 "${PREBUILT_BINARY}" /out/multiregion; \
    else \
      command -v make >/dev/null || { apt-get update -qq && apt-get install -y -qq make; }; \
      cargo build --release --locked --bin multiregion; \
      install -D -m 0755 target/release/multiregion /out/multiregion; \
      strip /out/multiregion; \
    fi

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="multiregion" \
      org.opencontainers.image.description="Runs one application across several Kubernetes clusters and fails traffic over when a region fails"
COPY --from=build /out/multiregion /usr/local/bin/multiregion
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/multiregion"]
CMD ["run"]
