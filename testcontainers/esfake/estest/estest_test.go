package estest_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/rendezvous-ml/rendezvous/testcontainers/esfake"
	"github.com/rendezvous-ml/rendezvous/testcontainers/esfake/estest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestContractFake(t *testing.T) {
	s := esfake.New()
	url, err := s.Start("")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	estest.RunContractTests(t, url)
}

func TestContractFakeLegacyVersion(t *testing.T) {
	// ES before 8.8 reported mapping errors as mapper_parsing_exception; the
	// suite accepts both, and so must the fake in that mode.
	s := esfake.New(esfake.WithVersion("8.7.1"), esfake.WithBasicAuth("elastic", "changeme"))
	url, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	estest.RunContractTests(t, "http://elastic:changeme@"+url[len("http://"):])
}

func TestContractFakeTLSAPIKey(t *testing.T) {
	s := esfake.New(esfake.WithAPIKey("aWQ6c2VjcmV0"))
	url, err := s.StartTLS("")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cfg := estestConfig(url, string(s.CACertPEM()), "aWQ6c2VjcmV0")
	estest.RunContractTestsConfig(t, cfg)
}

func TestContractRealCluster(t *testing.T) {
	cfg, ok := estest.ConfigFromEnv()
	if !ok {
		t.Skip(estest.EnvURL + " is not set: skipping the contract suite against a real Elasticsearch 8 cluster")
	}
	estest.RunContractTestsConfig(t, cfg)
}
