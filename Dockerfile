# dialtone server image (docker-compose.yml's cluster profile). Not built in CI (no Docker engine).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin dialtone

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /data dialtone && mkdir -p /data && chown dialtone /data
COPY --from=build /src/target/release/dialtone /usr/local/bin/dialtone
USER dialtone
ENV DIALTONE_DATA_DIR=/data
VOLUME /data
ENTRYPOINT ["dialtone"]
CMD ["serve"]
