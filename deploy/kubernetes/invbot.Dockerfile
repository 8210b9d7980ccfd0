# The bot's image, for the Job of base/invbot-job.yaml (image inventory-otel/invbot, tagged with
# the workspace version of Cargo.toml). Build from the repository root:
#   docker build -f deploy/kubernetes/invbot.Dockerfile -t inventory-otel/invbot:0.1.0 .
# (invbot.Dockerfile.dockerignore, beside this file, keeps build output out of the context.)
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p invbot

FROM debian:bookworm-slim
COPY --from=build /src/target/release/invbot /usr/local/bin/invbot
# The Job runs it as 10001 with a read-only root; its state and logs go to the working directory.
USER 10001:10001
WORKDIR /var/lib/invbot
ENTRYPOINT ["/usr/local/bin/invbot"]
CMD ["run"]
