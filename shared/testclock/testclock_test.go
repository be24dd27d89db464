package testclock

import (
	"testing"
	"time"
)

func TestOffset(t *testing.T) {
	real := time.Date(2026, 12, 4, 17, 0, 0, 0, time.UTC)
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"", 0, false},
		{"+400d", 400 * 24 * time.Hour, false},
		{"400d", 400 * 24 * time.Hour, false},
		{"-2d", -48 * time.Hour, false},
		{"-36h", -36 * time.Hour, false},
		{"+90m", 90 * time.Minute, false},
		{"2027-01-01T00:00:00Z", time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC).Sub(real), false},
		{"tomorrow", 0, true},
		{"+xd", 0, true},
	}
	for _, tt := range tests {
		got, err := Offset(tt.in, real)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("Offset(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestNowHonoursTheVariable(t *testing.T) {
	t.Setenv(EnvVar, "+400d")
	got := Now(t)
	want := time.Now().Add(400 * 24 * time.Hour)
	if d := got.Sub(want); d < -time.Minute || d > time.Minute {
		t.Errorf("Now = %v, want about %v", got, want)
	}
}

func TestClock(t *testing.T) {
	start := time.Date(2030, 1, 31, 23, 59, 0, 0, time.UTC)
	c := Fixed(start)
	if c.Now() != start {
		t.Fatalf("fixed clock moved: %v", c.Now())
	}
	c.Advance(time.Minute)
	if want := start.Add(time.Minute); c.Now() != want {
		t.Errorf("after Advance: %v, want %v", c.Now(), want)
	}
	r := Running(start)
	time.Sleep(5 * time.Millisecond)
	if got := r.Now(); !got.After(start) || got.Sub(start) > time.Minute {
		t.Errorf("running clock reads %v, want a little after %v", got, start)
	}
	if got := MonthStart(start, 1); got != time.Date(2030, 2, 1, 0, 0, 0, 0, time.UTC) {
		t.Errorf("MonthStart(+1) = %v", got)
	}
	if got := MonthStart(start, -1); got != time.Date(2029, 12, 1, 0, 0, 0, 0, time.UTC) {
		t.Errorf("MonthStart(-1) = %v", got)
	}
}
