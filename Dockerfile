# crier: one image, one binary. `crier broker` and `crier edge` are chosen by the container args (see helm/crier).

# --- build -------------------------------------------------------------------------------------------------
# protoc comes from the protoc-bin-vendored crate, so the builder needs nothing beyond the Rust toolchain.
FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --bin crier --locked \
    && install -D -m 0755 target/release/crier /out/crier

# --- runtime -----------------------------------------------------------------------------------------------
# Same Debian release as the builder, so the glibc the binary was linked against is present.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 crier \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin crier
COPY --from=builder /out/crier /usr/local/bin/crier
USER 10001:10001
# 3000: edge WebSocket, 50051: broker gRPC, 9090: admin (/metrics, /healthz, /readyz).
EXPOSE 3000 50051 9090
ENTRYPOINT ["/usr/local/bin/crier"]
