package main

// The burst: 200 concurrent requests on one key whose rate limit admits a
// few of them. The others wait for their 429 as long as the reservations
// that refuse them take: with transactions on the same items that conflict
// and retry, seconds; with one conditional write each, one write's time.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/budget"
)

const (
	burstRequests = 200
	burstAdmitted = 10 // the key's requests per minute, after one warm-up request
)

type burstResult struct {
	admitted, refused, other int
	refusedMs, admittedMs    []float64 // time to the response's status line
	// The proxy's side, of the refused requests: its handler's entry after
	// the burst's start (the client's connection and the server's accept),
	// and the handler's time from entry to return.
	enteredMs, handledMs []float64
	wall                 time.Duration
	crossedMinute        bool
}

func runBurst(ctx context.Context, st *stack, client *http.Client, url string, run int) (*burstResult, error) {
	k, err := st.limitsKey(ctx, "bench-burst", func(k *apikey.Key) {
		k.RateLimitOverTime, k.RateLimitUnit = burstAdmitted+1, string(budget.Minute)
	})
	if err != nil {
		return nil, err
	}
	// Leave room for the burst in the current minute.
	if now := time.Now(); now.Second() > 45 {
		time.Sleep(time.Minute - time.Duration(now.Second())*time.Second + time.Second)
	}
	do := func(id string) (int, time.Duration, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", bytes.NewReader(limitsBody))
		if err != nil {
			return 0, 0, err
		}
		req.Header.Set("Authorization", "Bearer "+k.key)
		req.Header.Set("Content-Type", "application/json")
		if id != "" {
			req.Header.Set(markHeader, id)
		}
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, 0, err
		}
		d := time.Since(t0)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, d, nil
	}
	if code, _, err := do(""); err != nil || code != http.StatusOK {
		return nil, fmt.Errorf("burst warm-up: %d %v", code, err)
	}
	res := &burstResult{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	minute := time.Now().Truncate(time.Minute)
	t0 := time.Now()
	id := func(i int) string { return fmt.Sprintf("burst-%d-%d", run, i) }
	defer func() {
		for i := range burstRequests {
			st.marks.take(id(i))
		}
	}()
	for i := range burstRequests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			code, d, err := do(id(i))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && code == http.StatusOK:
				res.admitted++
				res.admittedMs = append(res.admittedMs, float64(d)/1e6)
			case err == nil && code == http.StatusTooManyRequests:
				res.refused++
				res.refusedMs = append(res.refusedMs, float64(d)/1e6)
				if m, ok := st.marks.take(id(i)); ok && m.enter > 0 && m.left > 0 {
					res.enteredMs = append(res.enteredMs, float64(m.enter-t0.UnixNano())/1e6)
					res.handledMs = append(res.handledMs, float64(m.left-m.enter)/1e6)
				}
			default:
				res.other++
			}
		}()
	}
	close(start)
	wg.Wait()
	res.wall = time.Since(t0)
	res.crossedMinute = !time.Now().Truncate(time.Minute).Equal(minute)
	sort.Float64s(res.refusedMs)
	sort.Float64s(res.admittedMs)
	return res, nil
}

func (r report) burst(b *burstResult) {
	fmt.Fprintf(r.w, "Burst: %d concurrent requests on one key admitting %d per minute (in-process Handler, DynamoDB Local)\n", burstRequests, burstAdmitted)
	exact := "exact"
	if b.admitted != burstAdmitted {
		exact = fmt.Sprintf("want %d", burstAdmitted)
		if b.crossedMinute {
			exact += " (the burst crossed a minute)"
		}
	}
	fmt.Fprintf(r.w, "  admitted / refused (429) / other              %d / %d / %d   %s\n", b.admitted, b.refused, b.other, exact)
	r50, r99 := quantiles(b.refusedMs)
	a50, a99 := quantiles(b.admittedMs)
	fmt.Fprintf(r.w, "  time to the 429 p50 / p99                      %s / %s   target p50 < 100 ms\n", ms(r50), ms(r99))
	fmt.Fprintf(r.w, "  time to the 200's status p50 / p99             %s / %s\n", ms(a50), ms(a99))
	e50, e99 := quantiles(b.enteredMs)
	h50, h99 := quantiles(b.handledMs)
	fmt.Fprintf(r.w, "  429s: proxy handler entered after start p50 / p99  %s / %s   (client connection, server accept)\n", ms(e50), ms(e99))
	fmt.Fprintf(r.w, "  429s: proxy handler entry to return p50 / p99      %s / %s\n", ms(h50), ms(h99))
	fmt.Fprintf(r.w, "  whole burst, wall time                         %.0f ms\n", float64(b.wall)/1e6)
}
