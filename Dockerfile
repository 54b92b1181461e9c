# syntax=docker/dockerfile:1
# Tessera, CPU image: one static binary (/tessera) on distroless, running as
# nonroot (65532). Build: make image. The Helm chart's coordinator always uses
# this image; CPU workers do too.
#
#   docker build -t ghcr.io/tessera-llm/tessera:dev .
#   docker build --build-arg BUNDLE_MODEL= -t ...     # without the bundled model
ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/tessera ./cmd/tessera
# Models under models/ to bundle at /models/<name> (space-separated; empty: none).
# The chart serves a bundled model with model.source=image.
ARG BUNDLE_MODEL=docbloom-3m
RUN mkdir -p /out/models && for m in ${BUNDLE_MODEL}; do cp -r "models/$m" /out/models/; done

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tessera /tessera
COPY --from=build --chown=65532:65532 /out/models /models
USER 65532:65532
# 8080 HTTP API, 9090 coordinator gRPC, 7070 worker gRPC, 8081 worker HTTP
EXPOSE 8080 9090 7070 8081
ENTRYPOINT ["/tessera"]
CMD ["--help"]
