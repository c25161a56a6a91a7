package config_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/rendezvous-ml/rendezvous/pipeline/config"
)

func TestDefaultsAreValid(t *testing.T) {
	d := config.Defaults()
	if err := d.Validate(); err != nil {
		t.Fatalf("Defaults() does not validate: %v", err)
	}
	if d.Objective != "iris" || !reflect.DeepEqual(d.Kafka.Brokers, []string{"127.0.0.1:9092"}) ||
		d.RegistryURL != "http://127.0.0.1:8081" || d.LogLevel != "info" || d.Instance != "" || d.SessionTimeout < time.Second {
		t.Fatalf("unexpected defaults %+v", d)
	}
}

func TestValidateNamesTheBadField(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*config.Common)
		want   []string // each must appear in the error
	}{
		{"empty objective", func(c *config.Common) { c.Objective = "" }, []string{"objective:"}},
		{"objective with a space", func(c *config.Common) { c.Objective = "my obj" }, []string{"objective:", `"my obj"`}},
		{"objective with a dot", func(c *config.Common) { c.Objective = "a.b" }, []string{"objective:"}},
		{"objective with a slash", func(c *config.Common) { c.Objective = "a/b" }, []string{"objective:"}},
		{"no brokers", func(c *config.Common) { c.Kafka.Brokers = nil }, []string{"brokers:"}},
		{"no registry", func(c *config.Common) { c.RegistryURL = "" }, []string{"registry:"}},
		{"unknown SASL mechanism", func(c *config.Common) {
			c.Kafka.SASLMechanism, c.Kafka.SASLUser = "GSSAPI", "u"
		}, []string{"kafka-sasl-mechanism:", `"GSSAPI"`}},
		{"SASL without user", func(c *config.Common) { c.Kafka.SASLMechanism = "PLAIN" }, []string{"kafka-sasl-user:"}},
		{"cert without key", func(c *config.Common) { c.Kafka.TLSCertFile = "c.pem" }, []string{"kafka-tls-cert and kafka-tls-key"}},
		{"key without cert", func(c *config.Common) { c.Kafka.TLSKeyFile = "k.pem" }, []string{"kafka-tls-cert and kafka-tls-key"}},
		{"bad log level", func(c *config.Common) { c.LogLevel = "loud" }, []string{"log-level:", `"loud"`}},
		{"empty log level", func(c *config.Common) { c.LogLevel = "" }, []string{"log-level:"}},
		{"short session timeout", func(c *config.Common) { c.SessionTimeout = 500 * time.Millisecond }, []string{"session-timeout:", "500ms"}},
		{"instance with a space", func(c *config.Common) { c.Instance = "a b" }, []string{"instance:", `"a b"`}},
		{"instance with a slash", func(c *config.Common) { c.Instance = "a/b" }, []string{"instance:"}},
		{"several at once", func(c *config.Common) {
			c.Objective, c.Kafka.Brokers, c.RegistryURL, c.LogLevel = "", nil, "", "x"
		}, []string{"objective:", "brokers:", "registry:", "log-level:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Defaults()
			tt.mutate(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
			// Only the fields at fault are named.
			for _, other := range []string{"objective:", "brokers:", "registry:", "kafka-sasl-mechanism:", "kafka-sasl-user:", "kafka-tls-cert", "log-level:", "session-timeout:", "instance:"} {
				if strings.Contains(err.Error(), other) && !containsAny(tt.want, other) {
					t.Errorf("error %q also blames %q", err, other)
				}
			}
		})
	}
}

func containsAny(list []string, s string) bool {
	for _, l := range list {
		if strings.Contains(l, s) || strings.Contains(s, l) {
			return true
		}
	}
	return false
}

func TestValidateAccepts(t *testing.T) {
	for _, mutate := range []func(*config.Common){
		func(c *config.Common) { c.Kafka.SASLMechanism, c.Kafka.SASLUser = "PLAIN", "u" },
		func(c *config.Common) { c.Kafka.SASLMechanism, c.Kafka.SASLUser = "scram-sha-256", "u" },
		func(c *config.Common) { c.Kafka.SASLMechanism, c.Kafka.SASLUser = "SCRAM-SHA-512", "u" },
		func(c *config.Common) { c.Kafka.TLSCertFile, c.Kafka.TLSKeyFile = "c", "k" },
		func(c *config.Common) { c.LogLevel = "debug" },
		func(c *config.Common) { c.LogLevel = "WARN" },
		func(c *config.Common) { c.LogLevel = "error" },
		func(c *config.Common) { c.Objective = "fraud_v2-eu" },
		func(c *config.Common) { c.Instance = "enricher-0" },
		func(c *config.Common) { c.SessionTimeout = time.Second },
	} {
		c := config.Defaults()
		mutate(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "WARN": slog.LevelWarn, "error": slog.LevelError} {
		got, err := config.ParseLevel(in)
		if err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := config.ParseLevel("verbose"); err == nil || !strings.Contains(err.Error(), `"verbose"`) {
		t.Errorf("ParseLevel(verbose) err = %v", err)
	}
}

func TestSplitList(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{",, ,", nil},
		{"a", []string{"a"}},
		{"a,b", []string{"a", "b"}},
		{" a , b ,", []string{"a", "b"}},
		{"h1:9092,,h2:9092", []string{"h1:9092", "h2:9092"}},
	}
	for _, tt := range tests {
		if got := config.SplitList(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SplitList(%q) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
}

var allEnv = []string{
	"RDV_OBJECTIVE", "RDV_BROKERS", "RDV_KAFKA_TLS", "RDV_KAFKA_TLS_CA", "RDV_KAFKA_TLS_CERT", "RDV_KAFKA_TLS_KEY",
	"RDV_KAFKA_SASL_MECHANISM", "RDV_KAFKA_SASL_USER", "RDV_KAFKA_SASL_PASSWORD", "RDV_REGISTRY_URL",
	"RDV_REGISTRY_USER", "RDV_REGISTRY_PASSWORD", "RDV_HTTP_ADDR", "RDV_LOG_LEVEL", "RDV_INSTANCE", "RDV_SESSION_TIMEOUT",
}

// clearEnv unsets every RDV_* variable for the test, restoring them after.
func clearEnv(t *testing.T) {
	for _, k := range allEnv {
		t.Setenv(k, "") // registers the restore
		os.Unsetenv(k)
	}
}

func TestRegisterWithoutEnvGivesDefaults(t *testing.T) {
	clearEnv(t)
	var c config.Common
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c.Register(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if want := config.Defaults(); !reflect.DeepEqual(c, want) {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}
}

func TestRegisterReadsEnv(t *testing.T) {
	clearEnv(t)
	env := map[string]string{
		"RDV_OBJECTIVE":            "fraud",
		"RDV_BROKERS":              "k1:9092, k2:9092",
		"RDV_KAFKA_TLS":            "true",
		"RDV_KAFKA_TLS_CA":         "/ca.pem",
		"RDV_KAFKA_TLS_CERT":       "/c.pem",
		"RDV_KAFKA_TLS_KEY":        "/k.pem",
		"RDV_KAFKA_SASL_MECHANISM": "PLAIN",
		"RDV_KAFKA_SASL_USER":      "alice",
		"RDV_KAFKA_SASL_PASSWORD":  "secret",
		"RDV_REGISTRY_URL":         "https://sr:8081",
		"RDV_REGISTRY_USER":        "bob",
		"RDV_REGISTRY_PASSWORD":    "pw",
		"RDV_HTTP_ADDR":            ":9100",
		"RDV_LOG_LEVEL":            "debug",
		"RDV_INSTANCE":             "enricher-1",
		"RDV_SESSION_TIMEOUT":      "9s",
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	var c config.Common
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c.Register(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	want := config.Defaults() // fields without a variable here keep their default
	want.Objective = "fraud"
	want.Kafka = config.Kafka{
		Brokers: []string{"k1:9092", "k2:9092"}, TLS: true, TLSCAFile: "/ca.pem", TLSCertFile: "/c.pem", TLSKeyFile: "/k.pem",
		SASLMechanism: "PLAIN", SASLUser: "alice", SASLPassword: "secret",
	}
	want.RegistryURL, want.RegistryUser, want.RegistryPass = "https://sr:8081", "bob", "pw"
	want.HTTPAddr, want.LogLevel = ":9100", "debug"
	want.Instance, want.SessionTimeout = "enricher-1", 9*time.Second
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}
	// The environment is the flags' default, shown in -help.
	if f := fs.Lookup("objective"); f == nil || f.DefValue != "fraud" {
		t.Errorf("objective flag default = %v", f)
	}
	if f := fs.Lookup("brokers"); f == nil || f.DefValue != "k1:9092,k2:9092" {
		t.Errorf("brokers flag default = %q", f.DefValue)
	}
}

func TestFlagsOverrideEnv(t *testing.T) {
	clearEnv(t)
	t.Setenv("RDV_OBJECTIVE", "fraud")
	t.Setenv("RDV_BROKERS", "env1:9092,env2:9092")
	t.Setenv("RDV_KAFKA_TLS", "true")
	t.Setenv("RDV_REGISTRY_URL", "http://env:8081")
	t.Setenv("RDV_LOG_LEVEL", "debug")
	t.Setenv("RDV_HTTP_ADDR", ":1")
	t.Setenv("RDV_INSTANCE", "env-0")
	t.Setenv("RDV_SESSION_TIMEOUT", "20s")
	var c config.Common
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.Register(fs)
	err := fs.Parse([]string{
		"-objective", "iris", "-brokers", "flag:9092", "-kafka-tls=false",
		"-registry", "http://flag:8081", "-log-level", "warn",
		"-kafka-sasl-mechanism", "SCRAM-SHA-256", "-kafka-sasl-user", "u", "-kafka-sasl-password", "p",
		"-registry-user", "ru", "-registry-password", "rp",
		"-kafka-tls-ca", "ca", "-kafka-tls-cert", "c", "-kafka-tls-key", "k",
		"-instance", "flag-1", "-session-timeout", "3s",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := config.Defaults()
	want.Objective = "iris"
	want.Kafka = config.Kafka{
		Brokers: []string{"flag:9092"}, TLSCAFile: "ca", TLSCertFile: "c", TLSKeyFile: "k",
		SASLMechanism: "SCRAM-SHA-256", SASLUser: "u", SASLPassword: "p",
	}
	want.RegistryURL, want.RegistryUser, want.RegistryPass = "http://flag:8081", "ru", "rp"
	want.HTTPAddr = ":1" // -http not given: the environment's
	want.LogLevel = "warn"
	want.Instance, want.SessionTimeout = "flag-1", 3*time.Second
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}
}

func TestRegisterKafkaTLSIsTrueOnlyForTrue(t *testing.T) {
	for val, want := range map[string]bool{"true": true, "1": false, "yes": false, "": false} {
		clearEnv(t)
		t.Setenv("RDV_KAFKA_TLS", val)
		var c config.Common
		c.Register(flag.NewFlagSet("t", flag.ContinueOnError))
		if c.Kafka.TLS != want {
			t.Errorf("RDV_KAFKA_TLS=%q gives TLS %v, want %v", val, c.Kafka.TLS, want)
		}
	}
}

func TestListVar(t *testing.T) {
	var v []string
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	config.ListVar(fs, &v, "topics", "")
	if err := fs.Parse([]string{"-topics", "a, b,,c"}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(v, []string{"a", "b", "c"}) {
		t.Fatalf("topics = %#v", v)
	}
	if got := fs.Lookup("topics").Value.String(); got != "a,b,c" {
		t.Fatalf("String() = %q", got)
	}
}

func TestEnvHelpers(t *testing.T) {
	t.Setenv("RDV_T_STR", "v")
	t.Setenv("RDV_T_EMPTY", "")
	t.Setenv("RDV_T_DUR", "250ms")
	t.Setenv("RDV_T_BADDUR", "soon")
	t.Setenv("RDV_T_INT", "42")
	t.Setenv("RDV_T_BADINT", "4x")
	os.Unsetenv("RDV_T_UNSET")
	if config.Env("RDV_T_STR", "d") != "v" || config.Env("RDV_T_UNSET", "d") != "d" {
		t.Error("Env")
	}
	if got := config.Env("RDV_T_EMPTY", "d"); got != "" {
		t.Errorf("Env of a variable set empty = %q, want empty (set wins over default)", got)
	}
	if config.EnvDuration("RDV_T_DUR", time.Second) != 250*time.Millisecond ||
		config.EnvDuration("RDV_T_BADDUR", time.Second) != time.Second ||
		config.EnvDuration("RDV_T_UNSET", 3*time.Second) != 3*time.Second {
		t.Error("EnvDuration")
	}
	if config.EnvInt("RDV_T_INT", 1) != 42 || config.EnvInt("RDV_T_BADINT", 1) != 1 || config.EnvInt("RDV_T_UNSET", 7) != 7 {
		t.Error("EnvInt")
	}
}

// optValues builds a client from opts (it does not connect) and reads
// option values back.
func optValues(t *testing.T, opts []kgo.Opt, opt any) []any {
	t.Helper()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	return cl.OptValues(opt)
}

func TestClientOptsPlain(t *testing.T) {
	opts, err := config.Kafka{Brokers: []string{"a:1", "b:2"}}.ClientOpts()
	if err != nil {
		t.Fatal(err)
	}
	if got := optValues(t, opts, kgo.SeedBrokers); !reflect.DeepEqual(got, []any{[]string{"a:1", "b:2"}}) {
		t.Errorf("seed brokers = %v", got)
	}
	if got := optValues(t, opts, kgo.DialTLSConfig); got[0].(*tls.Config) != nil {
		t.Errorf("TLS configured without being asked: %v", got)
	}
	if got := optValues(t, opts, kgo.SASL); len(got[0].([]sasl.Mechanism)) != 0 {
		t.Errorf("SASL configured without being asked: %v", got)
	}
}

func TestClientOptsSASL(t *testing.T) {
	for mech, name := range map[string]string{"PLAIN": "PLAIN", "scram-sha-256": "SCRAM-SHA-256", "SCRAM-SHA-512": "SCRAM-SHA-512"} {
		opts, err := config.Kafka{Brokers: []string{"a:1"}, SASLMechanism: mech, SASLUser: "u", SASLPassword: "p"}.ClientOpts()
		if err != nil {
			t.Fatal(err)
		}
		ms := optValues(t, opts, kgo.SASL)[0].([]sasl.Mechanism)
		if len(ms) != 1 || ms[0].Name() != name {
			t.Errorf("%s: mechanisms %v, want %s", mech, ms, name)
		}
	}
}

func TestClientOptsTLS(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	ca := filepath.Join(dir, "ca.pem")
	cert := filepath.Join(dir, "cert.pem")
	key := filepath.Join(dir, "key.pem")
	notPEM := filepath.Join(dir, "empty.pem")
	for p, b := range map[string][]byte{ca: certPEM, cert: certPEM, key: keyPEM, notPEM: []byte("not a certificate\n")} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("TLS without files", func(t *testing.T) {
		opts, err := config.Kafka{Brokers: []string{"a:1"}, TLS: true}.ClientOpts()
		if err != nil {
			t.Fatal(err)
		}
		tc := optValues(t, opts, kgo.DialTLSConfig)[0].(*tls.Config)
		if tc == nil || tc.MinVersion != tls.VersionTLS12 || tc.RootCAs != nil || len(tc.Certificates) != 0 {
			t.Fatalf("tls config %+v", tc)
		}
	})
	t.Run("CA and client pair", func(t *testing.T) {
		opts, err := config.Kafka{Brokers: []string{"a:1"}, TLSCAFile: ca, TLSCertFile: cert, TLSKeyFile: key}.ClientOpts()
		if err != nil {
			t.Fatal(err)
		}
		tc := optValues(t, opts, kgo.DialTLSConfig)[0].(*tls.Config)
		if tc == nil || tc.RootCAs == nil || len(tc.Certificates) != 1 {
			t.Fatalf("tls config %+v: want the CA pool and one client certificate", tc)
		}
	})
	t.Run("missing CA file", func(t *testing.T) {
		_, err := config.Kafka{Brokers: []string{"a:1"}, TLSCAFile: filepath.Join(dir, "nope.pem")}.ClientOpts()
		if err == nil || !strings.HasPrefix(err.Error(), "kafka-tls-ca:") || !strings.Contains(err.Error(), "nope.pem") {
			t.Fatalf("err = %v, want one naming kafka-tls-ca and the file", err)
		}
		if !os.IsNotExist(unwrapAll(err)) {
			t.Errorf("err %v does not wrap the not-exist error", err)
		}
	})
	t.Run("CA file without a certificate", func(t *testing.T) {
		_, err := config.Kafka{Brokers: []string{"a:1"}, TLSCAFile: notPEM}.ClientOpts()
		if err == nil || !strings.Contains(err.Error(), "kafka-tls-ca: no certificate found") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("missing key file", func(t *testing.T) {
		_, err := config.Kafka{Brokers: []string{"a:1"}, TLSCertFile: cert, TLSKeyFile: filepath.Join(dir, "nokey.pem")}.ClientOpts()
		if err == nil || !strings.HasPrefix(err.Error(), "kafka-tls-cert:") {
			t.Fatalf("err = %v, want one naming kafka-tls-cert", err)
		}
	})
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "rdv-test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func TestLogger(t *testing.T) {
	c := config.Defaults()
	c.LogLevel = "warn"
	l := c.Logger("enricher")
	if l.Enabled(t.Context(), slog.LevelInfo) || !l.Enabled(t.Context(), slog.LevelWarn) {
		t.Fatal("logger does not honour log-level warn")
	}
}
