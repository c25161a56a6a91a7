// Package promtext reads a stage's /metrics page in the Prometheus text
// format. It is for operators' tools and tests that need a figure from a
// running stage: `rdv dev` waiting for the models, the benchmark and the
// end-to-end suites.
package promtext

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Series maps a series, its name with its labels as printed
// (`rdv_x_total{model="dt@1"}`), to its value.
type Series map[string]float64

// Scrape reads http://addr/metrics.
func Scrape(ctx context.Context, hc *http.Client, addr string) (Series, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics of %s: %s", addr, resp.Status)
	}
	out := Series{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		// The value is the last field; a label value may hold spaces.
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", addr, err)
	}
	return out, nil
}

// Sum adds the series of the metric name, over all their labels, and
// returns the largest single one too.
func (s Series) Sum(name string) (sum, most float64) {
	for k, v := range s {
		if k == name || (strings.HasPrefix(k, name) && k[len(name)] == '{') {
			sum += v
			most = max(most, v)
		}
	}
	return sum, most
}
