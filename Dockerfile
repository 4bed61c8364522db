# sd-worker, CPU build. Multi-stage: the Rust toolchain stays in the build stage; the runtime stage is
# Debian slim with the binary, curl for the health check, and a non-root user.
#
#   docker build -t sd-worker .
#   docker run --rm -p 8600:8600 -v "$PWD/models:/models" \
#     -e SD_MODEL=/models/stable-diffusion-v1-5 -e SD_API_KEY=change-me sd-worker
#
# Every flag of `sd-worker serve` is also an environment variable (SD_*, HF_*): see `sd-worker serve --help`.
# Listening on 0.0.0.0 needs SD_API_KEY (or SD_API_KEY_FILE, or SD_INSECURE_NO_AUTH=true on a private network).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p sd-worker \
 && install -D -m 0755 target/release/sd-worker /out/sd-worker

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --create-home --home-dir /home/sd sd \
 && mkdir -p /models && chown sd:sd /models
COPY --from=build /out/sd-worker /usr/local/bin/sd-worker
# Models (diffusers folders, single files) and the Hugging Face cache live on the volume, so a new image
# version does not download or copy them again.
VOLUME ["/models"]
ENV SD_HOST=0.0.0.0 \
    SD_PORT=8600 \
    HF_HUB_CACHE=/models/huggingface/hub
USER sd
WORKDIR /home/sd
EXPOSE 8600
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${SD_PORT}/health" >/dev/null || exit 1
ENTRYPOINT ["sd-worker"]
CMD ["serve"]
