package lambdatest

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stipend/stipend/shared/rollover"
	"github.com/stipend/stipend/shared/testclock"
)

func TestReset(t *testing.T) {
	bootstrap(t, "reset") // fail before starting any service
	st := newStack(t, false)
	// The monthly event is dated (sam local invoke replays it as it is): the
	// key must exist before the month it closes, whatever today's date.
	var scheduled struct {
		Time time.Time `json:"time"`
	}
	if err := json.Unmarshal(readEvent(t, "reset/monthly.json"), &scheduled); err != nil || scheduled.Time.IsZero() {
		t.Fatalf("reset/monthly.json has no time: %v", err)
	}
	st.seedProxyKeyAt(t, testclock.MonthStart(scheduled.Time, -2))
	fn := startFunction(t, "reset", st.env())

	report := func(t *testing.T, res *result) rollover.Report {
		t.Helper()
		requireResponse(t, res)
		if res.ContentType != "application/json" {
			t.Errorf("response Content-Type = %q, want application/json", res.ContentType)
		}
		var rep rollover.Report
		dec := json.NewDecoder(bytes.NewReader(res.Body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rep); err != nil {
			t.Fatalf("response %q is not a rollover.Report: %v", res.Body, err)
		}
		return rep
	}

	t.Run("monthly", func(t *testing.T) {
		rep := report(t, fn.invoke(t, readEvent(t, "reset/monthly.json")))
		want := rollover.Report{Task: rollover.MonthlyClose, Period: "2026-11", Keys: 1, Statements: 1}
		if rep != want {
			t.Errorf("report = %+v, want %+v (the event's time is 2026-12-01)", rep, want)
		}
	})

	t.Run("stale", func(t *testing.T) {
		rep := report(t, fn.invoke(t, readEvent(t, "reset/stale.json")))
		want := rollover.Report{Task: rollover.StaleReservations}
		if rep != want {
			t.Errorf("report = %+v, want %+v (a sweep with nothing stale)", rep, want)
		}
	})
}
