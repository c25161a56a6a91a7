package oip

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/rendezvous-ml/rendezvous/stages/model/evaluator"
)

// minAttempt is the least time worth giving a retry: a call whose deadline
// leaves less is answered with the error it has.
const minAttempt = time.Millisecond

// Predict scores one input with the deadline one call timeout from now: one
// attempt, and a retry only if an attempt fails fast enough to leave time.
func (c *Client) Predict(x map[string]float64) (evaluator.Prediction, error) {
	return c.PredictBefore(context.Background(), x, time.Time{})
}

// PredictBefore scores one input for a caller whose answer is due at
// deadline (the request's SLA; zero means one call timeout from now; a
// ctx deadline that comes first replaces it). The first attempt always
// gets the full call timeout; a retry happens only while time remains
// before the deadline, and never runs past it. The call returns early,
// with ctx's error, when ctx ends.
func (c *Client) PredictBefore(ctx context.Context, x map[string]float64, deadline time.Time) (evaluator.Prediction, error) {
	row, err := c.row(x)
	if err != nil {
		return evaluator.Prediction{}, err
	}
	if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
		deadline = d
	}
	if deadline.IsZero() {
		deadline = time.Now().Add(c.cfg.Timeout)
	}
	cl := &call{row: row, deadline: deadline, done: make(chan result, 1)}
	if c.cfg.BatchWindow <= 0 || c.cfg.MaxBatch <= 1 {
		c.inflight.Add(1)
		c.run(ctx, []*call{cl})
		c.inflight.Done()
	} else {
		c.enqueue(cl)
	}
	select {
	case r := <-cl.done:
		return r.p, r.err
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return evaluator.Prediction{}, c.wrap(fmt.Errorf("%w: %w", ErrTimeout, ctx.Err()))
		}
		return evaluator.Prediction{}, c.wrap(ctx.Err())
	}
}

// row gathers the features in column order.
func (c *Client) row(x map[string]float64) ([]float64, error) {
	row := make([]float64, len(c.cfg.Features))
	for i, f := range c.cfg.Features {
		v, ok := x[f]
		if !ok {
			return nil, c.wrap(fmt.Errorf("predict: %w %q", evaluator.ErrMissingFeature, f))
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, c.wrap(fmt.Errorf("predict: %w: feature %q is %v", evaluator.ErrInvalidInput, f, v))
		}
		row[i] = v
	}
	return row, nil
}

type call struct {
	row      []float64
	deadline time.Time
	done     chan result // buffered: the sender never waits
}

type result struct {
	p   evaluator.Prediction
	err error
}

// batch collects the calls of one window.
type batch struct {
	calls []*call
	timer *time.Timer
	sent  bool
}

// enqueue adds cl to the open batch, opening one (and its window) if there
// is none. A batch is sent when its window ends or when it is full.
func (c *Client) enqueue(cl *call) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.pending
	if b == nil {
		b = &batch{}
		c.pending = b
		c.inflight.Add(1)
		b.timer = time.AfterFunc(c.cfg.BatchWindow, func() { c.send(b) })
	}
	b.calls = append(b.calls, cl)
	if len(b.calls) >= c.cfg.MaxBatch {
		c.pending = nil // newcomers open the next batch
		if b.timer.Stop() {
			go c.send(b)
		} // else the window just ended and its send is on the way
	}
}

// send closes the batch to newcomers and runs it.
func (c *Client) send(b *batch) {
	c.mu.Lock()
	if b.sent {
		c.mu.Unlock()
		return
	}
	b.sent = true
	if c.pending == b {
		c.pending = nil
	}
	calls := b.calls
	c.mu.Unlock()
	defer c.inflight.Done()
	// The batch serves several callers: no one caller's context may cancel
	// it. The call timeout and the deadlines bound it.
	c.run(context.Background(), calls)
}

// run sends one infer request for calls and answers each, retrying the
// calls whose deadlines leave time.
func (c *Client) run(parent context.Context, calls []*call) {
	for attempt := 1; ; attempt++ {
		timeout := c.cfg.Timeout
		if attempt > 1 {
			timeout = min(timeout, time.Until(latest(calls)))
		}
		ctx, cancel := context.WithTimeout(parent, timeout)
		preds, retry, err := c.infer(ctx, calls)
		cancel()
		if err == nil {
			for i, cl := range calls {
				cl.done <- result{p: preds[i]}
			}
			return
		}
		if attempt > 1 {
			err = fmt.Errorf("attempt %d of %d: %w", attempt, c.cfg.Retries+1, err)
		}
		err = c.wrap(fmt.Errorf("infer: %w", err))
		if !retry || attempt > c.cfg.Retries || parent.Err() != nil {
			for _, cl := range calls {
				cl.done <- result{err: err}
			}
			return
		}
		start := time.Now().Add(c.cfg.RetryBackoff)
		keep := make([]*call, 0, len(calls))
		for _, cl := range calls {
			if cl.deadline.Sub(start) >= minAttempt {
				keep = append(keep, cl)
			} else {
				cl.done <- result{err: err}
			}
		}
		if calls = keep; len(calls) == 0 {
			return
		}
		if c.cfg.RetryBackoff > 0 {
			t := time.NewTimer(c.cfg.RetryBackoff)
			select {
			case <-t.C:
			case <-parent.Done():
				t.Stop()
			}
		}
	}
}

func latest(calls []*call) time.Time {
	var l time.Time
	for _, cl := range calls {
		if cl.deadline.After(l) {
			l = cl.deadline
		}
	}
	return l
}

// Wire types of the infer call (the JSON body of the REST protocol).
type (
	inferRequest struct {
		Inputs  []requestInput  `json:"inputs"`
		Outputs []requestOutput `json:"outputs,omitempty"`
	}
	requestInput struct {
		Name     string    `json:"name"`
		Shape    []int     `json:"shape"`
		Datatype string    `json:"datatype"`
		Data     []float64 `json:"data"`
	}
	requestOutput struct {
		Name string `json:"name"`
	}
	inferResponse struct {
		ModelName    string           `json:"model_name"`
		ModelVersion string           `json:"model_version"`
		Outputs      []responseOutput `json:"outputs"`
	}
	responseOutput struct {
		Name     string          `json:"name"`
		Shape    []int64         `json:"shape"`
		Datatype string          `json:"datatype"`
		Data     json.RawMessage `json:"data"`
	}
)

// infer sends one request of shape [len(calls), n] and returns one
// prediction per call, in order. retry tells whether another attempt may
// succeed: timeouts, connection failures and 5xx answers.
func (c *Client) infer(ctx context.Context, calls []*call) (preds []evaluator.Prediction, retry bool, err error) {
	n := len(c.cfg.Features)
	in := requestInput{Name: c.cfg.InputName, Shape: []int{len(calls), n}, Datatype: "FP64", Data: make([]float64, 0, len(calls)*n)}
	for _, cl := range calls {
		in.Data = append(in.Data, cl.row...)
	}
	body := inferRequest{Inputs: []requestInput{in}, Outputs: []requestOutput{{Name: c.cfg.LabelOutput}}}
	if c.cfg.ProbaOutput != "" {
		body.Outputs = append(body.Outputs, requestOutput{Name: c.cfg.ProbaOutput})
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return nil, false, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.inferURL, bytes.NewReader(payload))
	if err != nil {
		return nil, false, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, raw, err := c.do(req)
	if err != nil {
		return nil, ctx.Err() != context.Canceled && !errors.Is(err, ErrBadResponse), err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode >= 500, statusErr(resp.StatusCode, raw)
	}
	preds, err = c.decode(raw, len(calls))
	if err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrBadResponse, err)
	}
	return preds, false, nil
}

// decode splits an infer response back into k predictions.
func (c *Client) decode(raw []byte, k int) ([]evaluator.Prediction, error) {
	var resp inferResponse
	if err := json.Unmarshal(raw, &resp); err != nil {
		return nil, fmt.Errorf("not an infer response: %w", err)
	}
	out, ok := output(resp.Outputs, c.cfg.LabelOutput)
	if !ok {
		return nil, fmt.Errorf("no output %q among %d outputs", c.cfg.LabelOutput, len(resp.Outputs))
	}
	labels, err := c.labels(out, k)
	if err != nil {
		return nil, err
	}
	preds := make([]evaluator.Prediction, k)
	for i := range preds {
		preds[i].Label = labels[i]
		preds[i].Probabilities = map[string]float64{}
	}
	if c.cfg.ProbaOutput == "" {
		return preds, nil
	}
	po, ok := output(resp.Outputs, c.cfg.ProbaOutput)
	if !ok {
		return nil, fmt.Errorf("no output %q among %d outputs", c.cfg.ProbaOutput, len(resp.Outputs))
	}
	nc := len(c.cfg.Classes)
	if !isFloat(po.Datatype) {
		return nil, fmt.Errorf("output %q is %s, want FP32 or FP64", po.Name, po.Datatype)
	}
	vals, err := flatten(po, k*nc)
	if err != nil {
		return nil, err
	}
	for i := range preds {
		for j, class := range c.cfg.Classes {
			v, err := number(vals[i*nc+j])
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("output %q: item %d is not a finite number", po.Name, i*nc+j)
			}
			preds[i].Probabilities[class] = v
		}
	}
	return preds, nil
}

// labels reads the label output: BYTES labels, or class indices (integers,
// or floats holding integers) into Classes.
func (c *Client) labels(o responseOutput, k int) ([]string, error) {
	vals, err := flatten(o, k)
	if err != nil {
		return nil, err
	}
	labels := make([]string, k)
	switch {
	case o.Datatype == "BYTES":
		for i, v := range vals {
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("output %q: item %d is %T, want a string", o.Name, i, v)
			}
			if len(c.cfg.Classes) > 0 && !slices.Contains(c.cfg.Classes, s) {
				return nil, fmt.Errorf("output %q: label %q is not one of the classes %v", o.Name, s, c.cfg.Classes)
			}
			labels[i] = s
		}
	case isInt(o.Datatype) || isFloat(o.Datatype):
		if len(c.cfg.Classes) == 0 {
			return nil, fmt.Errorf("output %q is a %s class index, but no classes are configured", o.Name, o.Datatype)
		}
		for i, v := range vals {
			f, err := number(v)
			if err != nil || f != math.Trunc(f) || f < 0 || f >= float64(len(c.cfg.Classes)) {
				return nil, fmt.Errorf("output %q: item %d (%v) is not a class index below %d", o.Name, i, v, len(c.cfg.Classes))
			}
			labels[i] = c.cfg.Classes[int(f)]
		}
	default:
		return nil, fmt.Errorf("output %q is %s, want BYTES or an integer class index", o.Name, o.Datatype)
	}
	return labels, nil
}

func output(outs []responseOutput, name string) (responseOutput, bool) {
	for _, o := range outs {
		if o.Name == name {
			return o, true
		}
	}
	return responseOutput{}, false
}

// flatten reads an output's data, flat or nested in row-major order, and
// checks that it and the shape hold want elements.
func flatten(o responseOutput, want int) ([]any, error) {
	if len(o.Shape) > 0 {
		size := int64(1)
		for _, d := range o.Shape {
			size *= d
		}
		if size != int64(want) {
			return nil, fmt.Errorf("output %q has shape %v, want %d elements", o.Name, o.Shape, want)
		}
	}
	var data any
	dec := json.NewDecoder(bytes.NewReader(o.Data))
	dec.UseNumber()
	if err := dec.Decode(&data); err != nil {
		return nil, fmt.Errorf("output %q: data: %w", o.Name, err)
	}
	out := make([]any, 0, want)
	var walk func(v any)
	walk = func(v any) {
		if a, ok := v.([]any); ok {
			for _, e := range a {
				walk(e)
			}
			return
		}
		out = append(out, v)
	}
	if _, ok := data.([]any); !ok {
		return nil, fmt.Errorf("output %q: data is not an array", o.Name)
	}
	walk(data)
	if len(out) != want {
		return nil, fmt.Errorf("output %q has %d elements, want %d", o.Name, len(out), want)
	}
	return out, nil
}

func number(v any) (float64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("%T is not a number", v)
	}
	return n.Float64()
}

func isInt(dt string) bool {
	switch dt {
	case "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64":
		return true
	}
	return false
}

func isFloat(dt string) bool { return dt == "FP16" || dt == "FP32" || dt == "FP64" }
