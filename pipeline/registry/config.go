package registry

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// DefaultTimeout bounds each HTTP request to the registry unless
// Config.Timeout says otherwise.
const DefaultTimeout = 5 * time.Second

// Config configures the client returned by New.
type Config struct {
	// URL is the registry's base URL, e.g. "http://localhost:8081". It may
	// carry credentials ("https://user:secret@host"), in which case
	// Username and Password must be empty.
	URL string
	// Username and Password enable HTTP basic auth; set both or neither.
	Username string
	Password string
	// Timeout bounds each HTTP request (a call may make more than one).
	// Zero means DefaultTimeout.
	Timeout time.Duration
}

// Defaults fills in zero fields.
func (c *Config) Defaults() {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
}

// Validate reports the first invalid field, by name.
func (c *Config) Validate() error {
	if strings.TrimSpace(c.URL) == "" {
		return fmt.Errorf("registry: Config.URL is required")
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("registry: Config.URL %q: %w", redact(c.URL), err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("registry: Config.URL %q must be an absolute http:// or https:// URL", redact(c.URL))
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("registry: Config.URL %q must not have a query or fragment", redact(c.URL))
	}
	if u.User != nil {
		if _, ok := u.User.Password(); !ok || u.User.Username() == "" {
			return fmt.Errorf("registry: Config.URL %q carries credentials without both a user name and a password", redact(c.URL))
		}
	}
	if u.User != nil && (c.Username != "" || c.Password != "") {
		return fmt.Errorf("registry: Config.URL carries credentials, so Config.Username and Config.Password must be empty")
	}
	if (c.Username == "") != (c.Password == "") {
		if c.Username == "" {
			return fmt.Errorf("registry: Config.Username is required when Config.Password is set")
		}
		return fmt.Errorf("registry: Config.Password is required when Config.Username is set")
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("registry: Config.Timeout must be positive, got %v", c.Timeout)
	}
	return nil
}

// endpoint returns the base URL without credentials or trailing slash, and
// the credentials to use.
func (c *Config) endpoint() (base, user, pass string) {
	u, _ := url.Parse(c.URL) // validated
	user, pass = c.Username, c.Password
	if u.User != nil {
		user = u.User.Username()
		pass, _ = u.User.Password()
		u.User = nil
	}
	return strings.TrimRight(u.String(), "/"), user, pass
}

// redact hides the password in a URL for error messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return u.Redacted()
}
