// Package testclock gives tests a present that the real calendar cannot
// overtake, and a clock to inject into the code under test.
//
// Tests derive every fixture time from [Now] (or from a [Clock] started at
// it), never from a fixed calendar date: a fixture dated "last month" stays
// last month whenever the suite runs. STIPEND_TEST_NOW moves that present,
// so the whole suite can be run as if on another day:
//
//	STIPEND_TEST_NOW=+400d go test ./...             # 400 days from today
//	STIPEND_TEST_NOW=2031-02-28T23:59:00Z go test ./...
//
// It accepts an RFC 3339 time or a signed offset from the real time in days
// (+400d) or as a Go duration (-36h). Code that cannot take an injected clock
// (the real bootstrap binaries) runs on the real clock; tests driving it use
// [Real] for their fixtures.
package testclock

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvVar names the environment variable that moves the tests' present.
const EnvVar = "STIPEND_TEST_NOW"

// Now returns the tests' present: the real time, moved by STIPEND_TEST_NOW
// when it is set. A malformed STIPEND_TEST_NOW fails the test.
func Now(tb testing.TB) time.Time {
	tb.Helper()
	off, err := Offset(os.Getenv(EnvVar), time.Now())
	if err != nil {
		tb.Fatalf("testclock: %v", err)
	}
	return time.Now().Add(off).UTC()
}

// Real returns the real time, for fixtures read by code that runs on the real
// clock (a bootstrap binary, DynamoDB's own TTL).
func Real() time.Time { return time.Now().UTC() }

// Offset parses a STIPEND_TEST_NOW value into the offset from real to add to
// the real time; "" is no offset.
func Offset(v string, real time.Time) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.Sub(real), nil
	}
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.Atoi(strings.TrimPrefix(days, "+"))
		if err != nil {
			return 0, fmt.Errorf("%s=%q: want an RFC 3339 time, days such as +400d, or a Go duration", EnvVar, v)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(strings.TrimPrefix(v, "+"))
	if err != nil {
		return 0, fmt.Errorf("%s=%q: want an RFC 3339 time, days such as +400d, or a Go duration", EnvVar, v)
	}
	return d, nil
}

// Clock is an injectable clock for the code under test. It starts at a given
// time and then either stands still ([Fixed]) or runs at real speed from
// there ([Running]); Set and Advance move it. It is safe for concurrent use.
type Clock struct {
	mu      sync.Mutex
	at      time.Time // the clock's reading at setAt
	setAt   time.Time // real time of the last Set; zero for a fixed clock
	running bool
}

// Fixed returns a clock that reads t until it is Set or Advanced.
func Fixed(t time.Time) *Clock { return &Clock{at: t} }

// Running returns a clock that reads t now and runs at real speed.
func Running(t time.Time) *Clock { return &Clock{at: t, setAt: time.Now(), running: true} }

// Now reads the clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running {
		return c.at
	}
	return c.at.Add(time.Since(c.setAt))
}

// Set makes the clock read t now.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.at, c.setAt = t, time.Now()
	c.mu.Unlock()
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// MonthStart returns the first instant of t's UTC month moved by months.
func MonthStart(t time.Time, months int) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month()+time.Month(months), 1, 0, 0, 0, 0, time.UTC)
}
