# The kroxide controller image: a static binary on an empty base, running as non-root.
# Built without the `demo` feature (no embedded API server, no example plugins).

FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev=~1.2
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p kroxide --no-default-features --bin kroxide \
    && cp target/release/kroxide /kroxide

FROM scratch
COPY --from=build /kroxide /kroxide
USER 65532:65532
ENTRYPOINT ["/kroxide"]
CMD ["controller"]
