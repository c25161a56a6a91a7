// Package containers starts real infrastructure in Docker containers for
// the end-to-end suites, with testcontainers-go: Redpanda (a Kafka API and a
// Confluent-compatible Schema Registry in one container) and Elasticsearch 8.
//
// Every function skips the calling test with one line when no Docker engine
// answers, so the suites that use it pass (skipped) on machines without
// Docker. Containers are removed when the test ends.
package containers

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/modules/elasticsearch"
	"github.com/testcontainers/testcontainers-go/modules/redpanda"
)

// Images, overridable by environment variables.
const (
	DefaultRedpandaImage      = "docker.redpanda.com/redpandadata/redpanda:v25.2.4"
	DefaultElasticsearchImage = "docker.elastic.co/elasticsearch/elasticsearch:8.19.9"

	EnvRedpandaImage      = "RDV_TEST_REDPANDA_IMAGE"
	EnvElasticsearchImage = "RDV_TEST_ES_IMAGE"
)

// ProbeTimeout bounds the check for a Docker engine.
const ProbeTimeout = 3 * time.Second

// startTimeout bounds starting one container, image pull included.
const startTimeout = 10 * time.Minute

var (
	probeOnce   sync.Once
	probeOK     bool
	probeReason string
)

// Available reports whether a Docker engine (or a compatible one, such as
// Podman with DOCKER_HOST set) answers within ProbeTimeout, using
// testcontainers-go's own provider health check. When it does not, the
// reason is one line. The answer is computed once per process.
func Available() (bool, string) {
	probeOnce.Do(func() { probeOK, probeReason = probe(ProbeTimeout) })
	return probeOK, probeReason
}

func probe(timeout time.Duration) (bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		// Parts of testcontainers-go panic when no Docker host can be
		// found; and creating the provider does not take a context, hence
		// the goroutine: a host that never answers cannot hold us past the
		// timeout.
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("%v", r)
			}
		}()
		p, err := testcontainers.ProviderDefault.GetProvider()
		if err != nil {
			done <- err
			return
		}
		done <- p.Health(ctx) // Health closes the provider
	}()
	select {
	case err := <-done:
		if err != nil {
			return false, oneLine(err.Error()) + " " + where()
		}
		return true, ""
	case <-ctx.Done():
		return false, fmt.Sprintf("no answer within %v %s", timeout, where())
	}
}

// where names the Docker host the probe was pointed at, for the reason.
func where() string {
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		return "(DOCKER_HOST=" + h + ")"
	}
	return "(DOCKER_HOST unset)"
}

// oneLine folds a possibly multi-line error into one short line.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	const max = 320
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}

// SkipUnlessAvailable skips the test, with one line, when Available is false.
func SkipUnlessAvailable(t testing.TB) {
	t.Helper()
	if ok, reason := Available(); !ok {
		t.Skip("no Docker engine: " + reason)
	}
}

func image(env, def string) string {
	if v := os.Getenv(env); v != "" {
		return v
	}
	return def
}

// Kafka starts a Redpanda container and returns its Kafka bootstrap broker
// and its Schema Registry URL. The container is removed when the test ends.
// Redpanda runs in dev-container mode: one core, 1 GiB, transactions and
// idempotent producers on, topics created only by the pipeline.
func Kafka(t testing.TB) (brokers []string, registryURL string) {
	t.Helper()
	SkipUnlessAvailable(t)
	img := image(EnvRedpandaImage, DefaultRedpandaImage)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	ctr, err := redpanda.Run(ctx, img)
	cleanup(t, "Redpanda", ctr) // before the error check: a half-started container is removed too
	if err != nil {
		t.Fatalf("start Redpanda (%s): %v", img, err)
	}
	seed, err := ctr.KafkaSeedBroker(ctx)
	if err != nil {
		t.Fatalf("Redpanda Kafka address: %v", err)
	}
	registryURL, err = ctr.SchemaRegistryAddress(ctx)
	if err != nil {
		t.Fatalf("Redpanda Schema Registry address: %v", err)
	}
	t.Logf("Redpanda %s: brokers %s, registry %s", img, seed, registryURL)
	return []string{seed}, registryURL
}

// Elasticsearch starts a single-node Elasticsearch 8 with security off
// (plain HTTP, no credentials needed) and a 512 MiB heap, and returns its
// URL. The container is removed when the test ends.
func Elasticsearch(t testing.TB) (url string) {
	t.Helper()
	SkipUnlessAvailable(t)
	img := image(EnvElasticsearchImage, DefaultElasticsearchImage)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	ctr, err := elasticsearch.Run(ctx, img, testcontainers.WithEnv(map[string]string{
		"discovery.type":         "single-node",
		"xpack.security.enabled": "false", // also tells the module to wait on plain HTTP
		// ES_JAVA_OPTS comes after every jvm.options.d file, so it
		// overrides the 2 GiB heap the module writes there.
		"ES_JAVA_OPTS":     "-Xms512m -Xmx512m",
		"xpack.ml.enabled": "false",
	}))
	cleanup(t, "Elasticsearch", ctr)
	if err != nil {
		t.Fatalf("start Elasticsearch (%s): %v", img, err)
	}
	t.Logf("Elasticsearch %s: %s", img, ctr.Settings.Address)
	return ctr.Settings.Address
}

// cleanup removes a container when the test ends; if the test failed, it
// first logs the container's last lines.
func cleanup(t testing.TB, name string, ctr testcontainers.Container) {
	t.Helper()
	t.Cleanup(func() {
		if ctr == nil || isNilPtr(ctr) {
			return
		}
		if t.Failed() {
			logTail(t, name, ctr, 40)
		}
		if err := testcontainers.TerminateContainer(ctr); err != nil {
			t.Logf("remove %s container: %v", name, err)
		}
	})
}

func isNilPtr(ctr testcontainers.Container) bool {
	switch c := ctr.(type) {
	case *redpanda.Container:
		return c == nil
	case *elasticsearch.ElasticsearchContainer:
		return c == nil
	}
	return false
}

func logTail(t testing.TB, name string, ctr testcontainers.Container, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rc, err := ctr.Logs(ctx)
	if err != nil {
		t.Logf("%s logs: %v", name, err)
		return
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc) // whatever was read before an error is still worth showing
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	t.Logf("--- %s container (last %d lines)\n%s", name, len(lines), strings.Join(lines, "\n"))
}
