package ledger

import (
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/stipend/stipend/shared/jsonenc/jsonenctest"
	"github.com/stipend/stipend/shared/money"
)

// TestEventJSON holds AppendJSON to encoding/json's Marshal: on events with
// every field set (so that a field added to Event and not to AppendJSON
// fails here), with every field zero, and with random subsets of fields
// set to random values.
func TestEventJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var events []Event
	events = append(events, Event{}, filled(rng, 1))
	for range 500 {
		events = append(events, filled(rng, 0.5))
	}
	for _, e := range events {
		want, err := json.Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.AppendJSON([]byte("x")); string(got) != "x"+string(want) {
			t.Fatalf("AppendJSON:\n%s\nMarshal:\nx%s", got, want)
		}
	}
}

// filled is an Event whose fields (and its Usage's) are each set, with
// probability p, to a random non-zero value.
func filled(rng *rand.Rand, p float64) Event {
	var e Event
	jsonenctest.Fill(rng, p, &e, nil)
	return e
}

// BenchmarkEventJSON compares AppendJSON with Marshal on a typical event.
func BenchmarkEventJSON(b *testing.B) {
	e := Event{ID: "01JABCDEF", KeyID: "k1", ProviderID: "openai", Model: "gpt-4o-mini", Path: "/v1/chat/completions",
		Method: "POST", Status: 200, Usage: Usage{PromptTokens: 300, CompletionTokens: 120}, Cost: 3 * money.Dollar / 10000,
		LatencyMs: 850, CreatedAt: 1700000000000, ReservedCost: money.Dollar / 1000}
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 512)
		for b.Loop() {
			buf = e.AppendJSON(buf[:0])
		}
	})
	b.Run("Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			json.Marshal(&e)
		}
	})
}
