package lambdatest

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stipend/stipend/shared/rollover"
)

func TestReset(t *testing.T) {
	bootstrap(t, "reset") // fail before starting any service
	st := newStack(t, false)
	st.seedProxyKey(t)
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
