# syntax=docker/dockerfile:1
#
# One image for every Rendezvous binary: frontend, enricher, model-runner,
# rendezvous, decoy, log-connector, es-connector and rdv. A container picks
# its stage by its command, e.g. `docker run rendezvous:dev frontend`.
#
#   make image                                  # rendezvous:dev
#   docker build --build-arg GO_TAGS=objectstore -t rendezvous:dev .
#                                               # log connector with s3:// stores
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Static binaries: the runtime image has no libc.
ENV CGO_ENABLED=0 GOFLAGS=-mod=mod
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
ARG GO_TAGS=
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -tags "${GO_TAGS}" -ldflags "-s -w" -o /out/bin/ ./cmd/...

# The runtime image has no shell and no curl, so Docker health checks (the
# compose file's) need a binary of their own: GET a URL, exit 0 on 200.
# ops/check.sh compiles this same text, so a broken probe fails CI, not a
# deployment.
COPY <<'EOF' /probe/main.go
// Command rdv-probe is the image's health check: it GETs a stage's /readyz
// (or the URL given) and exits 0 only on 200, printing the body either way.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	url := "http://127.0.0.1:9100/readyz"
	if len(os.Args) > 1 {
		url = os.Args[1]
	}
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rdv-probe:", err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(os.Stdout, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(os.Stderr, "rdv-probe: %s answered %s\n", url, resp.Status)
		os.Exit(1)
	}
}
EOF
RUN cd /probe && GOFLAGS= go build -trimpath -ldflags "-s -w" -o /out/bin/rdv-probe main.go
# Named volumes take the ownership of the image's directory they mount on,
# so the archive directory must exist already owned by the non-root user.
RUN mkdir -p /out/var/archive

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=build /src/models/iris/ /app/models/iris/
COPY --from=build /src/ops/elastic/ilm-policy.json /src/ops/elastic/ilm-policy-dated.json /app/ops/elastic/
COPY --from=build --chown=65532:65532 /out/var/ /var/lib/rendezvous/
WORKDIR /app
USER 65532:65532
# Inside a container the stages listen on every interface at fixed ports
# (the binaries' defaults are loopback and a random port, for `rdv dev`).
ENV RDV_HTTP_ADDR=0.0.0.0:9100 \
    RDV_FRONTEND_ADDR=0.0.0.0:8000 \
    RDV_ARCHIVE_DIR=/var/lib/rendezvous/archive
EXPOSE 8000 9100
CMD ["rdv", "help"]
