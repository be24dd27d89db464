package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// target is one way to reach the model: the upstream directly or the proxy.
type target struct {
	name   string // "direct" or "proxy"
	url    string // the chat completions endpoint
	apiKey string
}

// newClient returns the benchmark's HTTP/1.1 client: no transparent
// decompression (it would buffer), no proxy from the environment, and
// enough idle connections for every concurrent stream to keep its own.
func newClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DisableCompression:  true,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     90 * time.Second,
	}}
}

// chatBody is a streamed chat completion request. It asks for usage itself,
// so the proxy passes the body and the events through unchanged and both
// paths receive the same events.
func chatBody(prompt string) []byte {
	return fmt.Appendf(nil, `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},`+
		`"messages":[{"role":"user","content":%q}]}`, prompt)
}

// received is one stream as the client saw it.
type received struct {
	ttfb   time.Duration // request sent until the first body byte
	body   []byte
	reads  []readMark
	sentAt int64 // Unix ns when the request was handed to the client
	eofAt  int64 // Unix ns when the body reported its end
}

// stream sends one streamed completion to t and reads the body with plain
// Reads, timestamping each. It does no other work until the body ends.
func stream(ctx context.Context, c *http.Client, t target, body []byte) (received, error) {
	return streamWith(ctx, c, t, body, nil)
}

// streamWith is stream with extra request headers.
func streamWith(ctx context.Context, c *http.Client, t target, body []byte, extra http.Header) (received, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return received{}, err
	}
	for name, v := range extra {
		req.Header[name] = v
	}
	req.Header.Set("Authorization", "Bearer "+t.apiKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")

	var rc received
	buf := make([]byte, 64<<10)
	rc.body = make([]byte, 0, 64<<10)
	rc.reads = make([]readMark, 0, 128)

	t0 := time.Now()
	rc.sentAt = t0.UnixNano()
	resp, err := c.Do(req)
	if err != nil {
		return rc, fmt.Errorf("%s: %w", t.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return rc, fmt.Errorf("%s: status %d: %s", t.name, resp.StatusCode, bytes.TrimSpace(msg))
	}
	for {
		n, rerr := resp.Body.Read(buf)
		now := time.Now()
		if n > 0 {
			if len(rc.reads) == 0 {
				rc.ttfb = now.Sub(t0)
			}
			rc.body = append(rc.body, buf[:n]...)
			rc.reads = append(rc.reads, readMark{end: len(rc.body), at: now.UnixNano()})
		}
		if rerr == io.EOF {
			rc.eofAt = now.UnixNano()
			return rc, nil
		}
		if rerr != nil {
			return rc, fmt.Errorf("%s: read body: %w", t.name, rerr)
		}
	}
}

// pathStats aggregates the streams of one path.
type pathStats struct {
	streams, failed int
	firstErr        error
	delaysMs        []float64 // per content event
	ttfbMs          []float64 // per stream
	tailMs          []float64 // per stream: body end minus last content event sent
	events, content int
	reads           int
	contentReads    int
	misdelivered    int
}

// add folds in one stream; want is the number of content events expected.
func (ps *pathStats) add(rc received, err error, want int) {
	ps.streams++
	if err == nil {
		st := analyze(rc.body, rc.reads)
		if st.content != want || !st.done {
			err = fmt.Errorf("incomplete stream: %d of %d content events, [DONE] seen: %v", st.content, want, st.done)
		} else {
			ps.delaysMs = append(ps.delaysMs, st.delaysMs...)
			ps.ttfbMs = append(ps.ttfbMs, float64(rc.ttfb)/1e6)
			ps.tailMs = append(ps.tailMs, float64(rc.eofAt-st.lastSent)/1e6)
			ps.events += st.events
			ps.content += st.content
			ps.reads += st.reads
			ps.contentReads += st.contentReads
			ps.misdelivered += st.misdelivered
			return
		}
	}
	ps.failed++
	if ps.firstErr == nil {
		ps.firstErr = err
	}
}

// concurrent runs one stream to each of targets at once, their starts
// spread evenly over spread (so that their events are not all in phase),
// and aggregates them.
func concurrent(ctx context.Context, c *http.Client, targets []target, body []byte, spread time.Duration, want int) *pathStats {
	type result struct {
		rc  received
		err error
	}
	n := len(targets)
	results := make([]result, n)
	var wg sync.WaitGroup
	start := time.Now().Add(50 * time.Millisecond)
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			at := start.Add(spread * time.Duration(i) / time.Duration(n))
			select {
			case <-time.After(time.Until(at)):
			case <-ctx.Done():
				results[i].err = ctx.Err()
				return
			}
			results[i].rc, results[i].err = stream(ctx, c, t, body)
		}()
	}
	wg.Wait()
	ps := &pathStats{}
	for _, r := range results {
		ps.add(r.rc, r.err, want)
	}
	return ps
}
