// Package config holds the settings every stage shares: where Kafka and the
// registry are, how to reach them securely, and where to serve health and
// metrics. Each field can come from a flag or an RDV_* environment variable;
// flags win.
package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Kafka is how to reach the brokers.
type Kafka struct {
	Brokers       []string
	TLS           bool
	TLSCAFile     string
	TLSCertFile   string
	TLSKeyFile    string
	SASLMechanism string // PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
	SASLUser      string
	SASLPassword  string
}

// Common is the configuration shared by every stage.
type Common struct {
	Objective    string
	Kafka        Kafka
	RegistryURL  string
	RegistryUser string
	RegistryPass string
	// HTTPAddr serves /healthz, /readyz and /metrics.
	HTTPAddr string
	LogLevel string
	// Instance names this replica of a stage. When set, it is the consumer
	// group's static member id and the suffix of the transactional id, so a
	// restarted replica takes its predecessor's partitions at once and
	// fences its unfinished transaction. Replicas must not share one.
	Instance string
	// SessionTimeout is how long the group waits for a silent member.
	SessionTimeout time.Duration
	// SchemasDir, when set, replaces the schemas built into the binary:
	// a stage can run a newer contract without a rebuild.
	SchemasDir string
}

// Defaults returns the embedded-stack defaults of `rdv dev`.
func Defaults() Common {
	return Common{
		Objective:      "iris",
		Kafka:          Kafka{Brokers: []string{"127.0.0.1:9092"}},
		RegistryURL:    "http://127.0.0.1:8081",
		HTTPAddr:       "127.0.0.1:0",
		LogLevel:       "info",
		SessionTimeout: 6 * time.Second,
	}
}

// Env reads name, or def when unset.
func Env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

// EnvDuration reads a duration from name, or def when unset or malformed.
func EnvDuration(name string, def time.Duration) time.Duration {
	if v, ok := os.LookupEnv(name); ok {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

// EnvInt reads an integer from name, or def when unset or malformed.
func EnvInt(name string, def int) int {
	if v, ok := os.LookupEnv(name); ok {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}

type listFlag struct{ v *[]string }

func (l listFlag) String() string {
	if l.v == nil {
		return ""
	}
	return strings.Join(*l.v, ",")
}
func (l listFlag) Set(s string) error { *l.v = SplitList(s); return nil }

// SplitList splits a comma-separated list, dropping empty items.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// ListVar registers a comma-separated list flag.
func ListVar(fs *flag.FlagSet, v *[]string, name, usage string) {
	fs.Var(listFlag{v}, name, usage)
}

// Register adds the shared flags to fs, with defaults taken from the
// environment (RDV_OBJECTIVE, RDV_BROKERS, RDV_REGISTRY_URL, ...).
func (c *Common) Register(fs *flag.FlagSet) {
	d := Defaults()
	c.Objective = Env("RDV_OBJECTIVE", d.Objective)
	c.Kafka.Brokers = SplitList(Env("RDV_BROKERS", strings.Join(d.Kafka.Brokers, ",")))
	c.Kafka.TLS = Env("RDV_KAFKA_TLS", "") == "true"
	c.Kafka.TLSCAFile = Env("RDV_KAFKA_TLS_CA", "")
	c.Kafka.TLSCertFile = Env("RDV_KAFKA_TLS_CERT", "")
	c.Kafka.TLSKeyFile = Env("RDV_KAFKA_TLS_KEY", "")
	c.Kafka.SASLMechanism = Env("RDV_KAFKA_SASL_MECHANISM", "")
	c.Kafka.SASLUser = Env("RDV_KAFKA_SASL_USER", "")
	c.Kafka.SASLPassword = Env("RDV_KAFKA_SASL_PASSWORD", "")
	c.RegistryURL = Env("RDV_REGISTRY_URL", d.RegistryURL)
	c.RegistryUser = Env("RDV_REGISTRY_USER", "")
	c.RegistryPass = Env("RDV_REGISTRY_PASSWORD", "")
	c.HTTPAddr = Env("RDV_HTTP_ADDR", d.HTTPAddr)
	c.LogLevel = Env("RDV_LOG_LEVEL", d.LogLevel)
	c.Instance = Env("RDV_INSTANCE", "")
	c.SchemasDir = Env("RDV_SCHEMAS_DIR", "")
	c.SessionTimeout = EnvDuration("RDV_SESSION_TIMEOUT", d.SessionTimeout)

	fs.StringVar(&c.Objective, "objective", c.Objective, "business objective whose topics this stage serves (env RDV_OBJECTIVE)")
	ListVar(fs, &c.Kafka.Brokers, "brokers", "comma-separated Kafka bootstrap brokers (env RDV_BROKERS)")
	fs.BoolVar(&c.Kafka.TLS, "kafka-tls", c.Kafka.TLS, "connect to Kafka with TLS (env RDV_KAFKA_TLS=true)")
	fs.StringVar(&c.Kafka.TLSCAFile, "kafka-tls-ca", c.Kafka.TLSCAFile, "PEM CA bundle for Kafka TLS (env RDV_KAFKA_TLS_CA)")
	fs.StringVar(&c.Kafka.TLSCertFile, "kafka-tls-cert", c.Kafka.TLSCertFile, "client certificate for Kafka mTLS (env RDV_KAFKA_TLS_CERT)")
	fs.StringVar(&c.Kafka.TLSKeyFile, "kafka-tls-key", c.Kafka.TLSKeyFile, "client key for Kafka mTLS (env RDV_KAFKA_TLS_KEY)")
	fs.StringVar(&c.Kafka.SASLMechanism, "kafka-sasl-mechanism", c.Kafka.SASLMechanism, "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (env RDV_KAFKA_SASL_MECHANISM)")
	fs.StringVar(&c.Kafka.SASLUser, "kafka-sasl-user", c.Kafka.SASLUser, "SASL user (env RDV_KAFKA_SASL_USER)")
	fs.StringVar(&c.Kafka.SASLPassword, "kafka-sasl-password", c.Kafka.SASLPassword, "SASL password (env RDV_KAFKA_SASL_PASSWORD)")
	fs.StringVar(&c.RegistryURL, "registry", c.RegistryURL, "Schema Registry URL (env RDV_REGISTRY_URL)")
	fs.StringVar(&c.RegistryUser, "registry-user", c.RegistryUser, "Schema Registry basic-auth user (env RDV_REGISTRY_USER)")
	fs.StringVar(&c.RegistryPass, "registry-password", c.RegistryPass, "Schema Registry basic-auth password (env RDV_REGISTRY_PASSWORD)")
	fs.StringVar(&c.HTTPAddr, "http", c.HTTPAddr, "address for /healthz, /readyz and /metrics (env RDV_HTTP_ADDR)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error (env RDV_LOG_LEVEL)")
	fs.StringVar(&c.Instance, "instance", c.Instance, "name of this replica: static group member id and transactional id suffix (env RDV_INSTANCE)")
	fs.StringVar(&c.SchemasDir, "schemas", c.SchemasDir, "directory of Avro schemas (common/, <objective>/) replacing the built-in ones (env RDV_SCHEMAS_DIR)")
	fs.DurationVar(&c.SessionTimeout, "session-timeout", c.SessionTimeout, "consumer group session timeout (env RDV_SESSION_TIMEOUT)")
}

// Validate rejects a configuration that cannot work, naming the field.
func (c Common) Validate() error {
	var errs []error
	if c.Objective == "" || strings.ContainsAny(c.Objective, " ./") {
		errs = append(errs, fmt.Errorf("objective: %q must be a non-empty name without spaces, dots or slashes", c.Objective))
	}
	if len(c.Kafka.Brokers) == 0 {
		errs = append(errs, errors.New("brokers: at least one broker is required"))
	}
	if c.RegistryURL == "" {
		errs = append(errs, errors.New("registry: a Schema Registry URL is required"))
	}
	switch strings.ToUpper(c.Kafka.SASLMechanism) {
	case "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
	default:
		errs = append(errs, fmt.Errorf("kafka-sasl-mechanism: %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.Kafka.SASLMechanism))
	}
	if c.Kafka.SASLMechanism != "" && c.Kafka.SASLUser == "" {
		errs = append(errs, errors.New("kafka-sasl-user: required when kafka-sasl-mechanism is set"))
	}
	if (c.Kafka.TLSCertFile == "") != (c.Kafka.TLSKeyFile == "") {
		errs = append(errs, errors.New("kafka-tls-cert and kafka-tls-key: give both or neither"))
	}
	if c.SessionTimeout < time.Second {
		errs = append(errs, fmt.Errorf("session-timeout: %v is under 1s", c.SessionTimeout))
	}
	if strings.ContainsAny(c.Instance, " /") {
		errs = append(errs, fmt.Errorf("instance: %q must not contain spaces or slashes", c.Instance))
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		errs = append(errs, fmt.Errorf("log-level: %w", err))
	}
	return errors.Join(errs...)
}

// ParseLevel maps a level name to slog's.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
	}
	return l, nil
}

// Logger builds the stage's structured logger on stderr.
func (c Common) Logger(stage string) *slog.Logger {
	lvl, _ := ParseLevel(c.LogLevel)
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})).With("stage", stage, "objective", c.Objective)
}

// ClientOpts turns the connection settings into franz-go options.
func (k Kafka) ClientOpts() ([]kgo.Opt, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(k.Brokers...)}
	if k.TLS || k.TLSCAFile != "" || k.TLSCertFile != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if k.TLSCAFile != "" {
			pem, err := os.ReadFile(k.TLSCAFile)
			if err != nil {
				return nil, fmt.Errorf("kafka-tls-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("kafka-tls-ca: no certificate found in %s", k.TLSCAFile)
			}
			tc.RootCAs = pool
		}
		if k.TLSCertFile != "" {
			cert, err := tls.LoadX509KeyPair(k.TLSCertFile, k.TLSKeyFile)
			if err != nil {
				return nil, fmt.Errorf("kafka-tls-cert: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	switch strings.ToUpper(k.SASLMechanism) {
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: k.SASLUser, Pass: k.SASLPassword}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: k.SASLUser, Pass: k.SASLPassword}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: k.SASLUser, Pass: k.SASLPassword}.AsSha512Mechanism()))
	}
	return opts, nil
}
