package awsenv

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stipend/stipend/shared/h1client"
)

func TestFromEnv(t *testing.T) {
	base := map[string]string{"AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "secret"}
	with := func(kv map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range kv {
			if v == "" {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	tests := []struct {
		name       string
		env        map[string]string
		wantRegion string
		wantToken  string
		wantBase   string
		wantErr    []string // each missing variable is named
	}{
		{"lambda's variables", with(map[string]string{"AWS_SESSION_TOKEN": "tok"}), "eu-west-1", "tok", "", nil},
		{"default region", with(map[string]string{"AWS_REGION": "", "AWS_DEFAULT_REGION": "us-west-2"}), "us-west-2", "", "", nil},
		{"global endpoint", with(map[string]string{"AWS_ENDPOINT_URL": "http://localhost:4566"}), "eu-west-1", "", "http://localhost:4566", nil},
		{"nothing", map[string]string{}, "", "", "", []string{"AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "profiles"}},
		{"no secret", with(map[string]string{"AWS_SECRET_ACCESS_KEY": ""}), "", "", "", []string{"AWS_SECRET_ACCESS_KEY"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := FromEnv(func(k string) string { return tt.env[k] })
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("FromEnv = nil error, want one naming %v", tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not name %s", err, w)
					}
				}
				if strings.Contains(err.Error(), "secret") && tt.env["AWS_SECRET_ACCESS_KEY"] != "" {
					t.Errorf("error %q shows the secret", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Region != tt.wantRegion {
				t.Errorf("Region = %q, want %q", cfg.Region, tt.wantRegion)
			}
			creds, err := cfg.Credentials.Retrieve(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if creds.AccessKeyID != "AKID" || creds.SecretAccessKey != "secret" || creds.SessionToken != tt.wantToken {
				t.Errorf("credentials = %q/%q/%q, want AKID/secret/%q", creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken, tt.wantToken)
			}
			got := ""
			if cfg.BaseEndpoint != nil {
				got = *cfg.BaseEndpoint
			}
			if got != tt.wantBase {
				t.Errorf("BaseEndpoint = %q, want %q", got, tt.wantBase)
			}
			if _, ok := cfg.HTTPClient.(*h1client.Client); !ok {
				t.Errorf("HTTPClient is %T, want NewClient's *h1client.Client (the SDK's default has no timeouts)", cfg.HTTPClient)
			}
		})
	}
}

// TestServiceEndpoints checks the lookup the SDK's service clients make
// among ConfigSources for AWS_ENDPOINT_URL_<SERVICE>.
func TestServiceEndpoints(t *testing.T) {
	env := map[string]string{"AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:8000", "AWS_ENDPOINT_URL_SECRETS_MANAGER": "http://127.0.0.1:5000"}
	cfg, err := FromEnv(func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return map[string]string{"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	type provider interface {
		GetServiceBaseEndpoint(context.Context, string) (string, bool, error)
	}
	var p provider
	for _, s := range cfg.ConfigSources {
		if q, ok := s.(provider); ok {
			p = q
		}
	}
	if p == nil {
		t.Fatal("no ConfigSources entry answers GetServiceBaseEndpoint: the SDK would ignore AWS_ENDPOINT_URL_<SERVICE>")
	}
	for _, tt := range []struct {
		sdkID, want string
		found       bool
	}{
		{"DynamoDB", "http://127.0.0.1:8000", true},
		{"Secrets Manager", "http://127.0.0.1:5000", true},
		{"STS", "", false},
	} {
		got, found, err := p.GetServiceBaseEndpoint(context.Background(), tt.sdkID)
		if err != nil || got != tt.want || found != tt.found {
			t.Errorf("GetServiceBaseEndpoint(%q) = %q, %v, %v; want %q, %v", tt.sdkID, got, found, err, tt.want, tt.found)
		}
	}
}

// TestClient checks the AWS calls' client: it does not follow a redirect
// (a signed request stays where it was sent), it keeps its connection for
// the next call, and a call whose context ends times out with a net.Error
// that says so. (Its own timeouts are shared/h1client's to test.)
func TestClient(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/slow":
			<-r.Context().Done()
		default:
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c := NewClient()
	defer c.CloseIdleConnections()
	for range 2 {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/", strings.NewReader("{}"))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusTemporaryRedirect {
			t.Errorf("a redirect got status %d, want %d, not followed", resp.StatusCode, http.StatusTemporaryRedirect)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for two calls, want 1", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/slow", strings.NewReader("{}"))
	_, err := c.Do(req)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a call past its context's deadline: %v, want a timeout", err)
	}
}

// TestHTTPClient checks NewClient's fallback, net/http's client: it times a
// call out, it does not follow a redirect, and its transport is one
// net/http recognises, so a call's timeout costs no timer goroutine.
func TestHTTPClient(t *testing.T) {
	c := NewHTTPClient()
	if c.Timeout != CallTimeout {
		t.Errorf("Timeout = %v, want CallTimeout (%v)", c.Timeout, CallTimeout)
	}
	tr, ok := c.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("Transport is %T, want *http.Transport", c.Transport)
	}
	if tr.MaxIdleConnsPerHost != MaxIdleConnsPerHost || tr.TLSClientConfig == nil || tr.TLSClientConfig.MinVersion != tls.VersionTLS12 {
		t.Errorf("transport keeps %d idle connections a host, TLS config %+v; want %d, TLS 1.2 at least", tr.MaxIdleConnsPerHost, tr.TLSClientConfig, MaxIdleConnsPerHost)
	}

	var redirected atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/elsewhere":
			redirected.Store(true)
		case "/slow":
			<-r.Context().Done()
		default:
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
		}
	}))
	defer srv.Close()
	resp, err := c.Post(srv.URL+"/", "application/x-amz-json-1.0", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || redirected.Load() {
		t.Errorf("a redirect got status %d (followed: %v), want %d, not followed", resp.StatusCode, redirected.Load(), http.StatusTemporaryRedirect)
	}

	short := *c
	short.Timeout = 50 * time.Millisecond
	_, err = short.Get(srv.URL + "/slow")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("a call past the client's timeout: %v, want a timeout", err)
	}
}
