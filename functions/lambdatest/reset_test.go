package lambdatest

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/stipend/stipend/infra/localstack"
	"github.com/stipend/stipend/shared/budget"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/money"
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

	// The event a sweep writes for an abandoned reservation expires after
	// STIPEND_EVENT_RETENTION_DAYS, as the proxy's own events do.
	t.Run("stale-retention", func(t *testing.T) {
		const days = 7
		fn := startFunction(t, "reset", st.env("STIPEND_EVENT_RETENTION_DAYS=7"))
		ctx := t.Context()
		started := testclock.Real().Add(-30 * time.Minute)
		req := budget.Request{KeyID: "k-stale", Key: budget.Limits{PerMonth: money.Dollar}, Cost: money.Cent, Now: started}
		r := &budget.Reservation{ID: "abandoned", KeyID: "k-stale", Charges: budget.Plan(req), Cost: money.Cent,
			Deadline: started.Add(5 * time.Minute),
			Event:    ledger.Event{ID: "abandoned", KeyID: "k-stale", Model: "gpt-4o-mini", Status: 200, CreatedAt: started.UnixMilli()}}
		if err := st.store.Reserve(ctx, r); err != nil {
			t.Fatal(err)
		}
		rep := report(t, fn.invoke(t, readEvent(t, "reset/stale.json")))
		if rep.Settled != 1 {
			t.Fatalf("report = %+v, want the abandoned reservation settled", rep)
		}
		got := eventExpiry(t, st, "EV#k-stale")
		if want := started.Unix() + days*24*60*60; got != want {
			t.Errorf("the settled event expires at %d, want %d (created + %d days); %d days after creation means the setting was ignored",
				got, want, days, (got-started.Unix())/86400)
		}
	})
}

// eventExpiry returns the expiresAt of the one event stored under pk.
func eventExpiry(t *testing.T, st *stack, pk string) int64 {
	t.Helper()
	db := dynamodb.NewFromConfig(aws.Config{
		Region:      localstack.Region,
		Credentials: credentials.NewStaticCredentialsProvider(localstack.AccessKeyID, localstack.SecretAccessKey, ""),
	}, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(st.dynamoURL) })
	out, err := db.Query(t.Context(), &dynamodb.QueryInput{
		TableName:                 aws.String(table),
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: pk}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Items) != 1 {
		t.Fatalf("%d items under %s, want one event", len(out.Items), pk)
	}
	n, ok := out.Items[0]["expiresAt"].(*types.AttributeValueMemberN)
	if !ok {
		t.Fatalf("event has no numeric expiresAt: %v", out.Items[0])
	}
	v, err := strconv.ParseInt(n.Value, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
