// Command reset is stipend's scheduled function: on the 1st of each month
// (00:00 UTC) it closes the month, and every few minutes ({"task":"stale"})
// it settles what killed invocations left behind. Outside Lambda it runs
// once for the current time (STIPEND_RESET_TASK picks the task). It only
// wires: its environment is read by config.LoadReset (see shared/config).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/stipend/stipend/shared/awsenv"
	"github.com/stipend/stipend/shared/config"
	"github.com/stipend/stipend/shared/dynamo"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/nbconn"
	"github.com/stipend/stipend/shared/rollover"
	"github.com/stipend/stipend/shared/server"
)

// event is an EventBridge scheduled event or the constant {"task": ...} input.
type event struct {
	Time time.Time `json:"time"`
	Task string    `json:"task"`
}

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx := context.Background()
	cfg, err := config.LoadReset(os.Getenv)
	if err != nil {
		log.Error("reset cannot start", slog.String("cause", err.Error()))
		os.Exit(1)
	}
	awsCfg, err := awsenv.Load(ctx)
	if err != nil {
		log.Error("reset cannot start", slog.String("cause", err.Error()))
		os.Exit(1)
	}
	db, err := ddb.New(ctx, awsCfg)
	if err != nil {
		log.Error("reset cannot start", slog.String("cause", err.Error()))
		os.Exit(1)
	}
	store := dynamo.New(db, cfg.Table, cfg.EventRetention)
	handle := func(ctx context.Context, raw json.RawMessage) (rollover.Report, error) {
		var ev event
		if err := json.Unmarshal(raw, &ev); err != nil {
			return rollover.Report{}, fmt.Errorf("decode scheduled event: %w", err)
		}
		task := rollover.MonthlyClose
		if ev.Task != "" {
			task = rollover.Task(ev.Task)
		}
		if ev.Time.IsZero() {
			ev.Time = time.Now()
		}
		return rollover.Run(ctx, store, task, ev.Time, log)
	}
	if server.InLambda() {
		// aws-lambda-go's Runtime API client clones http.DefaultTransport
		// as Start begins: dialing through nbconn keeps its calls from
		// waking the runtime's monitor thread (see shared/nbconn).
		nbconn.WrapTransport(http.DefaultTransport.(*http.Transport))
		lambda.Start(handle)
		return
	}
	input, _ := json.Marshal(event{Time: time.Now(), Task: string(cfg.Task)})
	if _, err := handle(ctx, input); err != nil {
		log.Error("reset failed", slog.String("cause", err.Error()))
		os.Exit(1)
	}
}
