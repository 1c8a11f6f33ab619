# bulkverify, built from this repository: a static binary in a distroless
# image, run as a non-root user. Used by deploy/compose.yaml and deploy/k8s.
#
#   docker build -t bulkverify .
#   docker run --rm bulkverify help
#
# The build step is the same command that works outside Docker:
#   CGO_ENABLED=0 go build -trimpath -ldflags=-s -o bulkverify ./cmd/bulkverify

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags=-s -o /out/bulkverify ./cmd/bulkverify

# static-debian12 has CA certificates and /etc/passwd with "nonroot"
# (65532), and nothing else: no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bulkverify /usr/local/bin/bulkverify
USER nonroot:nonroot
WORKDIR /work
ENTRYPOINT ["/usr/local/bin/bulkverify"]
CMD ["help"]
