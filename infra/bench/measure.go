package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"sort"

	"github.com/stipend/stipend/shared/sse"
)

// readMark is one client Read that returned bytes: the body offset just
// past its last byte, and the wall-clock time (Unix ns) when it returned.
type readMark struct {
	end int
	at  int64
}

// span is one complete server-sent event in a body: bytes [start, end),
// its terminating blank line included.
type span struct{ start, end int }

// splitEvents returns the complete events in body, in order. Blank lines
// between events are skipped; an unterminated remainder is left out.
// Lines may end in "\n" or "\r\n".
func splitEvents(body []byte) []span {
	var out []span
	start := -1 // offset of the current event's first line, -1 between events
	for off := 0; off < len(body); {
		i := bytes.IndexByte(body[off:], '\n')
		if i < 0 {
			break // unterminated line: the stream ended mid-event
		}
		line := body[off : off+i+1]
		next := off + i + 1
		blank := len(line) == 1 || len(line) == 2 && line[0] == '\r'
		switch {
		case blank && start >= 0:
			out = append(out, span{start, next})
			start = -1
		case !blank && start < 0:
			start = off
		}
		off = next
	}
	return out
}

// readIndex returns the index of the read that delivered body byte off.
func readIndex(reads []readMark, off int) int {
	return sort.Search(len(reads), func(i int) bool { return reads[i].end > off })
}

// sentUnixNano returns an event's fake_sent_unix_nano, the upstream's clock
// when it wrote the event; ok is false for events without one (role,
// finish, usage chunks and [DONE]).
func sentUnixNano(event []byte) (ns int64, ok bool) {
	data := sse.Data(event)
	if !bytes.Contains(data, []byte(`"fake_sent_unix_nano"`)) {
		return 0, false
	}
	var v struct {
		Sent int64 `json:"fake_sent_unix_nano"`
	}
	if json.Unmarshal(data, &v) != nil || v.Sent <= 0 {
		return 0, false
	}
	return v.Sent, true
}

// streamStats is what one received stream says about its delivery.
type streamStats struct {
	// events counts complete SSE events and content those of them that
	// carry fake_sent_unix_nano; reads counts the Reads that returned bytes.
	events, content, reads int
	// delaysMs holds, per content event, the receive time of the Read that
	// completed it minus the time upstream wrote it, in milliseconds.
	delaysMs []float64
	// contentReads counts the distinct Reads that delivered bytes of
	// content events: equal to content when each arrived in a Read of its
	// own, fewer when they were batched, more when split. misdelivered
	// counts content events split over Reads or sharing one with another
	// content event. (Sharing a Read with a role, finish or usage event is
	// not counted: upstream sends those right before or after a content
	// event, not an interval apart.)
	contentReads, misdelivered int
	// lastSent is the fake_sent_unix_nano of the last content event.
	lastSent int64
	// done reports that the stream ended with "data: [DONE]".
	done bool
}

// analyze splits body into events and relates each to the reads that
// delivered it.
func analyze(body []byte, reads []readMark) streamStats {
	events := splitEvents(body)
	st := streamStats{events: len(events), reads: len(reads)}
	first := make([]int, len(events))
	last := make([]int, len(events))
	sent := make([]int64, len(events))  // 0 for events that are not content
	touching := make([]int, len(reads)) // content events with bytes in each read
	for i, ev := range events {
		first[i], last[i] = readIndex(reads, ev.start), readIndex(reads, ev.end-1)
		ns, ok := sentUnixNano(body[ev.start:ev.end])
		if !ok || last[i] >= len(reads) {
			continue
		}
		sent[i] = ns
		for r := first[i]; r <= last[i]; r++ {
			touching[r]++
		}
	}
	carried := make([]bool, len(reads)) // reads with content-event bytes
	for i, ev := range events {
		if i == len(events)-1 {
			st.done = bytes.Equal(sse.Data(body[ev.start:ev.end]), []byte("[DONE]"))
		}
		if sent[i] == 0 {
			continue
		}
		st.content++
		st.lastSent = sent[i]
		st.delaysMs = append(st.delaysMs, float64(reads[last[i]].at-sent[i])/1e6)
		for r := first[i]; r <= last[i]; r++ {
			if !carried[r] {
				carried[r] = true
				st.contentReads++
			}
		}
		if first[i] != last[i] || touching[first[i]] > 1 {
			st.misdelivered++
		}
	}
	return st
}

// percentile returns the p-th percentile (0-100) of sorted, interpolating
// linearly between the closest ranks; NaN when sorted is empty.
func percentile(sorted []float64, p float64) float64 {
	switch n := len(sorted); {
	case n == 0:
		return math.NaN()
	case n == 1 || p <= 0:
		return sorted[0]
	case p >= 100:
		return sorted[n-1]
	}
	rank := p / 100 * float64(len(sorted)-1)
	lo := int(math.Floor(rank))
	frac := rank - float64(lo)
	if lo+1 >= len(sorted) {
		return sorted[lo]
	}
	return sorted[lo] + frac*(sorted[lo+1]-sorted[lo])
}

// quantiles returns the 50th and 99th percentiles of xs (left unsorted).
func quantiles(xs []float64) (p50, p99 float64) {
	s := slices.Clone(xs)
	slices.Sort(s)
	return percentile(s, 50), percentile(s, 99)
}

// mark is one request of the Limits run as the servers saw it (Unix ns):
// when the proxy's handler got it, when the upstream's handler got it, and
// when the upstream's handler returned (its last byte written), and when
// the proxy's handler returned.
type mark struct{ enter, arrive, upDone, left int64 }

// limitSpans are one request of the Limits run, in milliseconds.
type limitSpans struct {
	// before is the proxy's handler entry to the upstream's arrival: the
	// proxy's work before forwarding (authentication, counting the prompt,
	// the reservation) plus one local hop to the upstream.
	before float64
	// toUpstream is the client's send to the upstream's arrival: before,
	// plus the client's hop to the proxy.
	toUpstream float64
	// after is the upstream's last byte to the client's end of body: the
	// relay of the last bytes plus settling the reservation.
	after float64
}

// spans turns a request's client times (sent, end of body; Unix ns) and
// its server marks into spans. Every time must be set and in order.
func spans(sent, eof int64, m mark) (limitSpans, error) {
	if sent == 0 || eof == 0 || m.enter == 0 || m.arrive == 0 || m.upDone == 0 {
		return limitSpans{}, errors.New("a timestamp is missing: the request did not pass both the proxy and the upstream")
	}
	if sent > m.enter || m.enter > m.arrive || m.arrive > m.upDone || m.upDone > eof {
		return limitSpans{}, errors.New("timestamps out of order")
	}
	return limitSpans{
		before:     float64(m.arrive-m.enter) / 1e6,
		toUpstream: float64(m.arrive-sent) / 1e6,
		after:      float64(eof-m.upDone) / 1e6,
	}, nil
}
