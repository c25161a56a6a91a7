package frontend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rendezvous-ml/rendezvous/pipeline/serde"
	"github.com/rendezvous-ml/rendezvous/schemas"
)

// KeyHeader carries the routing key (a user or tenant id) that A/B splits and
// per-tenant models use.
const KeyHeader = "X-Rdv-Key"

// Handler is the predict API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"ping": "pong"})
	})
	mux.HandleFunc("POST /predict", func(w http.ResponseWriter, r *http.Request) {
		s.predict(w, r, s.cfg.Objectives[0])
	})
	mux.HandleFunc("POST /v1/objectives/{objective}/predict", func(w http.ResponseWriter, r *http.Request) {
		s.predict(w, r, r.PathValue("objective"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no route for %s %s: use POST /predict or POST /v1/objectives/{objective}/predict", r.Method, r.URL.Path))
	})
	return mux
}

// ModelResult is the model's answer as the caller sees it.
type ModelResult struct {
	ModelName     string             `json:"modelName"`
	ModelVersion  string             `json:"modelVersion"`
	Result        any                `json:"result"`
	Probabilities map[string]float64 `json:"probabilities,omitempty"`
}

// Response is the body of a successful predict call.
type Response struct {
	Timestamp   string         `json:"timestamp"`
	MessageID   string         `json:"messageId"`
	Objective   string         `json:"objective"`
	ModelInput  map[string]any `json:"modelInput"`
	ModelResult ModelResult    `json:"modelResult"`
	Reason      string         `json:"reason"`
	Policy      string         `json:"policy"`
	LatencyMs   float64        `json:"latencyMs"`
}

// ErrorBody is the body of every failed call.
type ErrorBody struct {
	Error     string `json:"error"`
	MessageID string `json:"messageId,omitempty"`
}

func (s *Server) predict(w http.ResponseWriter, r *http.Request, objName string) {
	start := time.Now()
	obj, ok := s.objectives[objName]
	if !ok {
		s.fail(w, objName, http.StatusNotFound, fmt.Sprintf("unknown objective %q: this frontend serves %s", objName, strings.Join(s.cfg.Objectives, ", ")), "")
		return
	}
	features, status, err := parseFeatures(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody), obj.features, s.cfg.MaxBody)
	if err != nil {
		s.fail(w, objName, status, err.Error(), "")
		return
	}
	id := newID()
	if s.direct != nil {
		s.predictDirect(w, objName, id, features, start)
		return
	}
	now := start.UnixMicro()
	native := map[string]any{
		"request_id":      id,
		"objective":       objName,
		"key":             r.Header.Get(KeyHeader),
		"received_us":     now,
		"deadline_us":     now + s.cfg.SLA.Microseconds(),
		"reply_topic":     obj.topics.Results,
		"reply_partition": s.cfg.ReplyPartition,
		"features":        features,
	}
	value, err := obj.enc.Encode(make([]byte, 0, 128), native)
	if err != nil {
		// The body was validated against the schema, so this is ours.
		s.fail(w, objName, http.StatusInternalServerError, "encode request: "+err.Error(), id)
		return
	}
	ch := s.await(id)
	produced := make(chan error, 1)
	s.cl.Produce(r.Context(), &kgo.Record{Topic: obj.topics.Requests, Key: []byte(id), Value: value}, func(_ *kgo.Record, err error) {
		produced <- err
	})
	wait := s.cfg.SLA + s.cfg.Grace
	if s.cfg.DefaultResult != "" {
		wait = s.cfg.SLA + s.cfg.Fallback
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	// due: the fallback time passed while the request was not stored yet;
	// a default then could answer a request that is lost, so it waits for
	// the write (bounded by Grace).
	due := false
	for {
		select {
		case err := <-produced:
			if err != nil {
				s.take(id)
				s.fail(w, objName, http.StatusServiceUnavailable, "could not queue the request: "+err.Error(), id)
				return
			}
			produced = nil
			if due {
				s.expire(w, obj, id, features, start)
				return
			}
		case a := <-ch:
			if a.rec == nil {
				s.fail(w, objName, http.StatusBadGateway, "the answer could not be decoded", id)
				return
			}
			s.answerOK(w, objName, id, features, a.rec, start)
			return
		case <-timer.C:
			switch {
			case due:
				s.take(id)
				s.fail(w, objName, http.StatusServiceUnavailable, fmt.Sprintf("the request was not stored within %v", s.cfg.SLA+s.cfg.Fallback+s.cfg.Grace), id)
			case s.cfg.DefaultResult != "" && produced != nil:
				due = true
				timer.Reset(s.cfg.Grace)
				continue
			case s.cfg.DefaultResult != "":
				s.expire(w, obj, id, features, start)
			default:
				s.take(id)
				s.fail(w, objName, http.StatusGatewayTimeout, fmt.Sprintf("no answer within %v (SLA %v): is the rendezvous stage running?", s.cfg.SLA+s.cfg.Grace, s.cfg.SLA), id)
			}
			return
		case <-r.Context().Done():
			s.take(id)
			return
		}
	}
}

// expire answers the call with the default, as the frontend's own
// decision, and marks it for the rendezvous stage.
func (s *Server) expire(w http.ResponseWriter, obj *objective, id string, features map[string]any, start time.Time) {
	s.take(id)
	s.expiredMarker(obj, id)
	s.answerOK(w, obj.name, id, features, map[string]any{
		"model": "default", "version": "", "result": serde.Opt(s.cfg.DefaultResult),
		"reason": ReasonExpired, "policy": "frontend",
	}, start)
}

// MarkerModel is the model name of the score the frontend writes when it
// answers a call itself: the rendezvous stage that decides the request,
// now or after taking its partition over, records what the caller got.
const MarkerModel = "_frontend"

// expiredMarker tells the rendezvous stage that this call was answered
// with the default by the frontend: a score record on the request's key,
// so on its partition, with the reason as the error.
func (s *Server) expiredMarker(obj *objective, id string) {
	if obj.scoreEnc == nil {
		return
	}
	v, err := obj.scoreEnc.Encode(make([]byte, 0, 96), map[string]any{
		"request_id": id, "objective": obj.name, "model": MarkerModel, "version": "", "role": "frontend",
		"result": nil, "probabilities": map[string]any{},
		"error":      serde.Opt(ReasonExpired + ": no decision within " + (s.cfg.SLA + s.cfg.Fallback).String() + "; the frontend answered the default"),
		"compute_us": int64(0), "scored_us": time.Now().UnixMicro(),
	})
	if err != nil {
		s.env.Log.Error("encode the expired marker", "request_id", id, "err", err)
		return
	}
	s.cl.Produce(context.Background(), &kgo.Record{Topic: obj.topics.Scores, Key: []byte(id), Value: v}, func(_ *kgo.Record, err error) {
		if err != nil {
			s.env.Log.Error("write the expired marker", "request_id", id, "err", err)
		}
	})
}

// ReasonExpired is the reason of a default answered because no decision
// arrived in time: by the frontend at its fallback time, and in the
// decisions log by the rendezvous stage that decides the request later.
const ReasonExpired = "expired"

func (s *Server) answerOK(w http.ResponseWriter, objName, id string, features map[string]any, rec map[string]any, start time.Time) {
	resp := s.response(id, objName, features, rec, start)
	s.calls.WithLabelValues(objName, "200", resp.Reason).Inc()
	s.latency.WithLabelValues(objName, resp.Reason).Observe(time.Since(start).Seconds())
	writeResponse(w, resp)
}

func (s *Server) response(id, objName string, features map[string]any, rec map[string]any, start time.Time) Response {
	result, _ := serde.OptStr(rec, "result")
	var res any = result
	if _, ok := serde.OptStr(rec, "result"); !ok {
		res = nil
	}
	probs := serde.Doubles(rec, "probabilities")
	if len(probs) == 0 {
		probs = nil
	}
	return Response{
		Timestamp:  time.Now().UTC().Format(time.RFC3339Nano),
		MessageID:  id,
		Objective:  objName,
		ModelInput: features,
		ModelResult: ModelResult{
			ModelName:     serde.Str(rec, "model"),
			ModelVersion:  serde.Str(rec, "version"),
			Result:        res,
			Probabilities: probs,
		},
		Reason:    serde.Str(rec, "reason"),
		Policy:    serde.Str(rec, "policy"),
		LatencyMs: float64(time.Since(start).Microseconds()) / 1000,
	}
}

func (s *Server) fail(w http.ResponseWriter, objName string, code int, msg, id string) {
	s.calls.WithLabelValues(objName, strconv.Itoa(code), "error").Inc()
	writeError(w, code, msg, id)
}

func writeError(w http.ResponseWriter, code int, msg string, id ...string) {
	b := ErrorBody{Error: msg}
	if len(id) > 0 {
		b.MessageID = id[0]
	}
	writeJSON(w, code, b)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// parseFeatures reads a JSON object of features and checks it against the
// objective's request schema: every field without a default present, every
// value of the field's type, no field the schema does not know. It returns
// the features in goavro's native form.
func parseFeatures(body io.Reader, fields []schemas.Field, maxBody int64) (map[string]any, int, error) {
	dec := json.NewDecoder(body)
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("request body is over the %d-byte limit", maxBody)
		case errors.Is(err, io.EOF):
			return nil, http.StatusBadRequest, errors.New("request body is empty: send a JSON object of features")
		default:
			var typeErr *json.UnmarshalTypeError
			if errors.As(err, &typeErr) {
				return nil, http.StatusBadRequest, fmt.Errorf("request body must be a JSON object of features, got a JSON %s", typeErr.Value)
			}
			return nil, http.StatusBadRequest, fmt.Errorf("malformed JSON: %v", err)
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, http.StatusBadRequest, errors.New("malformed JSON: more than one value in the body, or something after the object")
	}
	if raw == nil {
		return nil, http.StatusBadRequest, errors.New("request body must be a JSON object of features, got null")
	}
	known := make(map[string]bool, len(fields))
	out := make(map[string]any, len(fields))
	for _, f := range fields {
		known[f.Name] = true
		v, ok := raw[f.Name]
		if !ok || v == nil {
			if f.HasDef {
				out[f.Name] = defaultNative(f)
				continue
			}
			return nil, http.StatusBadRequest, fmt.Errorf("missing field %q (%s)", f.Name, f.Type)
		}
		nv, err := toNative(f, v)
		if err != nil {
			return nil, http.StatusBadRequest, err
		}
		out[f.Name] = nv
	}
	var unknown []string
	for k := range raw {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		names := make([]string, 0, len(fields))
		for _, f := range fields {
			names = append(names, f.Name)
		}
		return nil, http.StatusBadRequest, fmt.Errorf("unknown field %q: the fields are %s", unknown[0], strings.Join(names, ", "))
	}
	return out, 0, nil
}

func toNative(f schemas.Field, v any) (any, error) {
	switch f.Type {
	case "double", "float", "int", "long":
		n, ok := v.(json.Number)
		if !ok {
			return nil, fmt.Errorf("field %q must be a number (%s), got %s", f.Name, f.Type, jsonKind(v))
		}
		switch f.Type {
		case "int", "long":
			i, err := strconv.ParseInt(n.String(), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("field %q must be an integer (%s), got %s", f.Name, f.Type, n)
			}
			if f.Type == "int" {
				if i < math.MinInt32 || i > math.MaxInt32 {
					return nil, fmt.Errorf("field %q: %d is out of range for int", f.Name, i)
				}
				return int32(i), nil
			}
			return i, nil
		}
		x, err := n.Float64()
		if err != nil || math.IsInf(x, 0) {
			return nil, fmt.Errorf("field %q: %s is out of range for %s", f.Name, n, f.Type)
		}
		if f.Type == "float" {
			if math.IsInf(float64(float32(x)), 0) {
				return nil, fmt.Errorf("field %q: %s is out of range for float", f.Name, n)
			}
			return float32(x), nil
		}
		return x, nil
	case "string":
		str, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("field %q must be a string, got %s", f.Name, jsonKind(v))
		}
		return str, nil
	case "boolean":
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("field %q must be true or false, got %s", f.Name, jsonKind(v))
		}
		return b, nil
	}
	return nil, fmt.Errorf("field %q has unsupported type %s", f.Name, f.Type)
}

func defaultNative(f schemas.Field) any {
	switch f.Type {
	case "int":
		x, _ := f.Default.(float64)
		return int32(x)
	case "long":
		x, _ := f.Default.(float64)
		return int64(x)
	case "float":
		x, _ := f.Default.(float64)
		return float32(x)
	}
	return f.Default
}

func jsonKind(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", x)
	case bool:
		return "a boolean"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case json.Number:
		return "a number"
	}
	return fmt.Sprintf("%T", v)
}
