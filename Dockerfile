# visionstack pipeline image: the `visionstack` binary (serve, model serve) on Debian
# slim with the libvips runtime, running as a non-root user.
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/visionstack:TAG .
# Cloud Run runs `visionstack serve` (PORT is set by Cloud Run); a Vertex AI custom
# container runs `visionstack model serve` (AIP_HTTP_PORT etc. are set by Vertex).

FROM golang:1.26.8-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libvips-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -ldflags="-s -w" -o /out/visionstack ./cmd/visionstack

# ONNX Runtime's library for the built-in face detector, from the npm package
# onnxruntime-node (pinned version and sha256 in the script).
FROM node:20-bookworm-slim AS onnxruntime
COPY scripts/install-onnxruntime.sh /install-onnxruntime.sh
RUN /install-onnxruntime.sh /ort

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libvips42 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin visionstack
WORKDIR /app
COPY --from=build /out/visionstack /usr/local/bin/visionstack
COPY --from=onnxruntime /ort/1.30.0/libonnxruntime.so /usr/local/lib/libonnxruntime.so
# The project files travel with the image: VISIONSTACK_PROJECT selects one.
COPY projects/ /app/projects/
USER 10001:10001
ENV PORT=8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/visionstack"]
CMD ["serve", "--backend", "cloud"]
