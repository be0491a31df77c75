# kyu's image: one binary for every role (`kyu api`, `kyu worker`, `kyu serve`, `kyu migrate`).
# Built by compose.yaml (`docker compose build`); on its own:
#   docker build -t kyu .
# Not built in CI, which runs no container engine (see docs/cluster.md).

# ---- build ------------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them: a stub crate with the
# real manifests and lock file.
COPY Cargo.toml Cargo.lock build.rs askama.toml ./
COPY actors/Cargo.toml actors/Cargo.toml
RUN mkdir -p src actors/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs actors/src/lib.rs \
 && cargo build --release --locked --bin kyu \
 && rm -rf src actors/src
# The real sources (migrations and templates are embedded at compile time).
COPY actors actors
COPY src src
COPY migrations migrations
RUN touch src/main.rs src/lib.rs actors/src/lib.rs \
 && cargo build --release --locked --bin kyu \
 && strip target/release/kyu

# ---- run --------------------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: TLS to a managed database; curl: the compose health checks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/kyu --create-home kyu
COPY --from=build /src/target/release/kyu /usr/local/bin/kyu
USER kyu
WORKDIR /var/lib/kyu
# The API port (`kyu api` / `kyu serve`; /metrics is served there too).
EXPOSE 7878
ENV KYU_BIND=0.0.0.0:7878
ENTRYPOINT ["kyu"]
CMD ["serve"]
