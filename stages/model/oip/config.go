package oip

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// Config is one model on one Open Inference Protocol server.
type Config struct {
	// URL is the server's base URL, such as http://127.0.0.1:8080 (the
	// client adds /v2/...).
	URL string
	// Model is the model's name on the server.
	Model string
	// Version, when set, pins the model version: the client then calls
	// /v2/models/{model}/versions/{version}/... and reports this version.
	// Empty lets the server pick its default version.
	Version string
	// Features are the feature names in the order of the input tensor's
	// columns: the order the model was trained with.
	Features []string
	// Classes are the model's classes in the order of its class indices and
	// of the probability output's columns. They are required when the label
	// output is a class index or when ProbaOutput is set; with a BYTES label
	// output they are optional, and a label outside them is then an error.
	Classes []string
	// InputName names the one FP64 input tensor, of shape [k, len(Features)].
	InputName string
	// LabelOutput names the output holding the predicted label, either as
	// BYTES (the label itself) or as an integer class index into Classes.
	LabelOutput string
	// ProbaOutput, when set, names an output of shape [k, len(Classes)]
	// holding the class probabilities (FP32 or FP64).
	ProbaOutput string
	// Timeout bounds one infer call. It lives inside the request's SLA.
	Timeout time.Duration
	// Retries is how many more times a failed infer call is tried, each only
	// while time remains before the caller's deadline. Timeouts, refused
	// connections and 5xx answers are retried; a 4xx or a malformed answer
	// is not.
	Retries int
	// RetryBackoff is the pause before a retry.
	RetryBackoff time.Duration
	// BatchWindow is how long the first of concurrent calls waits for
	// others to share its infer request. Zero sends every call on its own.
	BatchWindow time.Duration
	// MaxBatch caps the rows of one infer request; a full batch is sent at
	// once, before its window ends.
	MaxBatch int
	// MaxIdleConnsPerHost is how many kept-alive connections to the server
	// the client's transport keeps for reuse.
	MaxIdleConnsPerHost int
	// Transport, when set, carries the calls instead of the client's own
	// keep-alive transport (for sharing one transport between clients, or
	// for tests). The client never closes it.
	Transport http.RoundTripper
}

// Defaults returns the defaults: input "input-0", label output "predict"
// (MLServer's and KServe's scikit-learn runtimes), a 50ms call timeout, two
// retries, 1ms batching windows of at most 64 rows.
func Defaults() Config {
	return Config{
		InputName:           "input-0",
		LabelOutput:         "predict",
		Timeout:             50 * time.Millisecond,
		Retries:             2,
		RetryBackoff:        time.Millisecond,
		BatchWindow:         time.Millisecond,
		MaxBatch:            64,
		MaxIdleConnsPerHost: 32,
	}
}

// Validate names the bad field.
func (c Config) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("url: the model server's URL is required"))
	} else if u, err := url.Parse(c.URL); err != nil {
		errs = append(errs, fmt.Errorf("url: %w", err))
	} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("url: %q is not an http(s)://host[:port] URL", c.URL))
	} else if u.RawQuery != "" || u.Fragment != "" {
		errs = append(errs, fmt.Errorf("url: %q must not have a query or a fragment", c.URL))
	}
	if c.Model == "" {
		errs = append(errs, errors.New("model: the model's name on the server is required"))
	}
	if len(c.Features) == 0 {
		errs = append(errs, errors.New("features: at least one feature is required, in the model's column order"))
	}
	if err := unique("features", c.Features); err != nil {
		errs = append(errs, err)
	}
	if err := unique("classes", c.Classes); err != nil {
		errs = append(errs, err)
	}
	if c.InputName == "" {
		errs = append(errs, errors.New("input-name: required"))
	}
	if c.LabelOutput == "" {
		errs = append(errs, errors.New("label-output: required"))
	}
	if c.ProbaOutput != "" && len(c.Classes) == 0 {
		errs = append(errs, fmt.Errorf("proba-output: %q needs classes to name its columns", c.ProbaOutput))
	}
	if c.ProbaOutput != "" && c.ProbaOutput == c.LabelOutput {
		errs = append(errs, fmt.Errorf("proba-output: %q is also the label output", c.ProbaOutput))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout: %v must be positive", c.Timeout))
	}
	if c.Retries < 0 {
		errs = append(errs, fmt.Errorf("retries: %d must not be negative", c.Retries))
	}
	if c.RetryBackoff < 0 {
		errs = append(errs, fmt.Errorf("retry-backoff: %v must not be negative", c.RetryBackoff))
	}
	if c.BatchWindow < 0 {
		errs = append(errs, fmt.Errorf("batch-window: %v must not be negative", c.BatchWindow))
	}
	if c.MaxBatch < 1 {
		errs = append(errs, fmt.Errorf("max-batch: %d must be at least 1", c.MaxBatch))
	}
	if c.MaxIdleConnsPerHost < 1 && c.Transport == nil {
		errs = append(errs, fmt.Errorf("max-idle-conns-per-host: %d must be at least 1", c.MaxIdleConnsPerHost))
	}
	return errors.Join(errs...)
}

func unique(field string, names []string) error {
	for i, n := range names {
		if n == "" {
			return fmt.Errorf("%s: item %d is empty", field, i)
		}
		if j := slices.Index(names, n); j < i {
			return fmt.Errorf("%s: %q is given twice", field, n)
		}
	}
	return nil
}
