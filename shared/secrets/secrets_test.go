package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/awsenv"
)

func TestPing(t *testing.T) {
	endpoint := localtest.StartSecretsManager(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tests := []struct {
		name    string
		m       *Manager
		wantErr bool
	}{
		{"probe secret missing counts as reachable", NewManagerAt(localtest.AWSConfig(), endpoint), false},
		{"nobody listening", NewManagerAt(localtest.AWSConfig(), "http://127.0.0.1:1"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.m.Ping(ctx, "stipend/test/providers/readyz")
			if (err != nil) != tt.wantErr {
				t.Errorf("Ping = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

// TestPutGet writes and reads secrets on moto_server's Secrets Manager, and
// reads back through the SDK's own client what Manager wrote.
func TestPutGet(t *testing.T) {
	endpoint := localtest.StartSecretsManager(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := NewManagerAt(localtest.AWSConfig(), endpoint)
	sdk := secretsmanager.NewFromConfig(localtest.AWSConfig(), func(o *secretsmanager.Options) { o.BaseEndpoint = aws.String(endpoint) })

	if _, err := m.Get(ctx, "stipend/test/missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a missing secret = %v, want ErrNotFound", err)
	}
	arn, err := m.Put(ctx, "stipend/test/provider", "sk-first")
	if err != nil || !strings.HasPrefix(arn, "arn:aws:secretsmanager:") {
		t.Fatalf("Put (create) = %q, %v", arn, err)
	}
	if v, err := m.Get(ctx, "stipend/test/provider"); err != nil || v != "sk-first" {
		t.Fatalf("Get = %q, %v; want sk-first", v, err)
	}
	arn2, err := m.Put(ctx, "stipend/test/provider", `sk-"second"\`)
	if err != nil || arn2 != arn {
		t.Fatalf("Put (new version) = %q, %v; want the same ARN %q", arn2, err, arn)
	}
	for _, id := range []string{"stipend/test/provider", arn} {
		if v, err := m.Get(ctx, id); err != nil || v != `sk-"second"\` {
			t.Errorf("Get(%s) = %q, %v; want the new version", id, v, err)
		}
	}
	out, err := sdk.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("stipend/test/provider")})
	if err != nil || aws.ToString(out.SecretString) != `sk-"second"\` {
		t.Errorf("the SDK reads %v, %v", out, err)
	}
}

// TestRequests checks what Manager sends: the operations, a UUID client
// request token on each write (a new one per write), and errors that
// carry no secret value.
func TestRequests(t *testing.T) {
	var (
		mu   sync.Mutex
		ops  []string
		reqs []map[string]string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var in map[string]string
		_ = json.Unmarshal(b, &in)
		op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "secretsmanager.")
		mu.Lock()
		ops, reqs = append(ops, op), append(reqs, in)
		mu.Unlock()
		switch op {
		case "CreateSecret":
			w.WriteHeader(400)
			io.WriteString(w, `{"__type":"ResourceExistsException","message":"exists"}`)
		case "PutSecretValue":
			w.WriteHeader(500)
			io.WriteString(w, `{"__type":"InternalServiceError","message":"try later"}`)
		}
	}))
	defer srv.Close()
	cfg, err := awsenv.FromEnv(func(k string) string {
		return map[string]string{"AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewManagerAt(cfg, srv.URL).Put(context.Background(), "stipend/p", "sk-value-123")
	if err == nil || strings.Contains(err.Error(), "sk-value-123") {
		t.Fatalf("Put = %v; want an error without the value", err)
	}
	wantOps := []string{"CreateSecret", "PutSecretValue", "PutSecretValue", "PutSecretValue"}
	if strings.Join(ops, ",") != strings.Join(wantOps, ",") {
		t.Fatalf("operations %v, want %v", ops, wantOps)
	}
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	for i, in := range reqs {
		if !uuid.MatchString(in["ClientRequestToken"]) || in["SecretString"] != "sk-value-123" {
			t.Errorf("request %d (%s): %v", i, ops[i], in)
		}
	}
	if reqs[0]["Name"] != "stipend/p" || reqs[1]["SecretId"] != "stipend/p" {
		t.Errorf("names: %v", reqs)
	}
	if reqs[0]["ClientRequestToken"] == reqs[1]["ClientRequestToken"] {
		t.Error("CreateSecret and PutSecretValue share a token")
	}
	if reqs[1]["ClientRequestToken"] != reqs[2]["ClientRequestToken"] {
		t.Error("a retried PutSecretValue changed its token")
	}
}

// TestNewManagerEndpoint checks NewManager calls the configured endpoint,
// else the region's.
func TestNewManagerEndpoint(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"AWS_REGION": "eu-west-1"}, "https://secretsmanager.eu-west-1.amazonaws.com"},
		{map[string]string{"AWS_REGION": "cn-north-1"}, "https://secretsmanager.cn-north-1.amazonaws.com.cn"},
		{map[string]string{"AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL_SECRETS_MANAGER": "http://127.0.0.1:4566"}, "http://127.0.0.1:4566"},
	}
	for _, tt := range tests {
		env := map[string]string{"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}
		for k, v := range tt.env {
			env[k] = v
		}
		cfg, err := awsenv.FromEnv(func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		rec := &recorder{}
		cfg.HTTPClient = rec
		m, err := NewManager(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		rec.cancel = cancel
		_, _ = m.Get(ctx, "s")
		if rec.url != tt.want {
			t.Errorf("%v: called %q, want %q", tt.env, rec.url, tt.want)
		}
	}
}

// recorder notes the first request's URL and cancels the call.
type recorder struct {
	url    string
	cancel context.CancelFunc
}

func (r *recorder) Do(req *http.Request) (*http.Response, error) {
	if r.url == "" {
		r.url = req.URL.Scheme + "://" + req.URL.Host
	}
	r.cancel()
	return nil, errors.New("recorded")
}
