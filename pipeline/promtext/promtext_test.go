package promtext

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func TestScrapeAndSum(t *testing.T) {
	reg := prometheus.NewRegistry()
	wins := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rdv_t_wins_total"}, []string{"model"})
	winsX := prometheus.NewCounter(prometheus.CounterOpts{Name: "rdv_t_wins_total_extra"})
	lat := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "rdv_t_seconds"})
	reg.MustRegister(wins, winsX, lat)
	wins.WithLabelValues("dt@1").Add(3)
	wins.WithLabelValues("has space@2").Add(4)
	winsX.Add(100)
	lat.Observe(0.25)
	lat.Observe(0.5)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	s, err := Scrape(context.Background(), srv.Client(), strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	if got := s[`rdv_t_wins_total{model="has space@2"}`]; got != 4 {
		t.Errorf("labelled series with a space: %v, want 4", got)
	}
	// A metric whose name extends another's is not summed with it.
	if sum, most := s.Sum("rdv_t_wins_total"); sum != 7 || most != 4 {
		t.Errorf("Sum = %v, %v, want 7, 4", sum, most)
	}
	if sum, _ := s.Sum("rdv_t_seconds_sum"); sum != 0.75 {
		t.Errorf("histogram sum %v, want 0.75", sum)
	}
	if n, _ := s.Sum("rdv_t_seconds_count"); n != 2 {
		t.Errorf("histogram count %v, want 2", n)
	}
	types, err := Types(context.Background(), srv.Client(), strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	if types["rdv_t_wins_total"] != "counter" || types["rdv_t_seconds"] != "histogram" || len(types) != 3 {
		t.Errorf("types %v, want the three families with theirs", types)
	}
}

func TestScrapeNamesAFailure(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	_, err := Scrape(context.Background(), srv.Client(), addr)
	if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "404") {
		t.Fatalf("err = %v, want the address and the status", err)
	}
}
