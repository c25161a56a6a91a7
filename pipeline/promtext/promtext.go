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
	out := Series{}
	err := read(ctx, hc, addr, func(line string) {
		if line == "" || line[0] == '#' {
			return
		}
		// The value is the last field; a label value may hold spaces.
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	})
	return out, err
}

// Types reads the metric families of http://addr/metrics: name to type
// (counter, gauge, histogram, summary, untyped).
func Types(ctx context.Context, hc *http.Client, addr string) (map[string]string, error) {
	out := map[string]string{}
	err := read(ctx, hc, addr, func(line string) {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			out[f[2]] = f[3]
		}
	})
	return out, err
}

func read(ctx context.Context, hc *http.Client, addr string, each func(line string)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("metrics of %s: %s", addr, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		each(sc.Text())
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("metrics of %s: %w", addr, err)
	}
	return nil
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
