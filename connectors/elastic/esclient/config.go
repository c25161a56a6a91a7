package esclient

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// Config says how to reach the cluster.
type Config struct {
	URLs     []string      // node URLs, e.g. "https://es-1:9200"; default http://localhost:9200
	Username string        // basic authentication, with Password
	Password string        //
	APIKey   string        // base64 "id:key" API key; excludes Username/Password
	CACert   string        // PEM text, or the path of a PEM file, of the CA to trust for https
	Timeout  time.Duration // limit for each call (Bulk, EnsureTemplate, Ping); Defaults sets 30s when zero
}

// Default values applied by Defaults.
const (
	DefaultURL     = "http://localhost:9200"
	DefaultTimeout = 30 * time.Second
)

// Defaults fills unset fields: URLs and Timeout.
func (c *Config) Defaults() {
	if len(c.URLs) == 0 {
		c.URLs = []string{DefaultURL}
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
}

// ConfigError names the Config field that is wrong.
type ConfigError struct {
	Field   string // e.g. "URLs[1]", "Password"
	Problem string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("esclient: invalid Config.%s: %s", e.Field, e.Problem)
}

// Validate checks the configuration and returns a *ConfigError naming the
// first bad field.
func (c Config) Validate() error {
	if len(c.URLs) == 0 {
		return &ConfigError{"URLs", "at least one URL is required"}
	}
	for i, raw := range c.URLs {
		field := fmt.Sprintf("URLs[%d]", i)
		u, err := url.Parse(raw)
		if err != nil {
			return &ConfigError{field, fmt.Sprintf("cannot parse %q: %v", raw, err)}
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return &ConfigError{field, fmt.Sprintf("%q must start with http:// or https://", raw)}
		}
		if u.Host == "" {
			return &ConfigError{field, fmt.Sprintf("%q has no host", raw)}
		}
	}
	if c.Username != "" && c.Password == "" {
		return &ConfigError{"Password", "required when Username is set"}
	}
	if c.Password != "" && c.Username == "" {
		return &ConfigError{"Username", "required when Password is set"}
	}
	if c.APIKey != "" && c.Username != "" {
		return &ConfigError{"APIKey", "set either APIKey or Username/Password, not both"}
	}
	if strings.ContainsAny(c.APIKey, " \t\r\n") {
		return &ConfigError{"APIKey", "must not contain whitespace (give the base64 encoded key)"}
	}
	if c.Timeout < 0 {
		return &ConfigError{"Timeout", "must not be negative"}
	}
	if c.CACert != "" {
		if _, err := c.caPEM(); err != nil {
			return err
		}
	}
	return nil
}

// caPEM returns the CA certificate PEM, reading the file CACert names when
// CACert is not PEM text itself.
func (c Config) caPEM() ([]byte, error) {
	var data []byte
	if strings.Contains(c.CACert, "-----BEGIN") {
		data = []byte(c.CACert)
	} else {
		b, err := os.ReadFile(c.CACert)
		if err != nil {
			return nil, &ConfigError{"CACert", fmt.Sprintf("neither PEM text nor a readable file: %v", err)}
		}
		data = b
	}
	rest := data
	found := false
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return nil, &ConfigError{"CACert", fmt.Sprintf("bad certificate: %v", err)}
		}
		found = true
	}
	if !found {
		return nil, &ConfigError{"CACert", "no PEM CERTIFICATE block found"}
	}
	return data, nil
}
