package devstack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// secretFront stands between the functions and moto_server, which keeps
// secrets in memory only. It forwards every Secrets Manager call and, when
// file is set, records each secret value written (CreateSecret,
// PutSecretValue; DeleteSecret forgets it) in that file, so the next run can
// put them back into a fresh moto. Because moto gives a recreated secret a
// new random ARN suffix, the front also turns a full ARN in SecretId into the
// secret's name: provider settings that stored an ARN from an earlier run
// still find their key.
//
// The file holds secret values in plain text (mode 0600). It is for a
// developer's own data directory only.
type secretFront struct {
	upstream string // moto's endpoint
	file     string // "" keeps nothing
	client   *http.Client

	mu    sync.Mutex
	saved map[string]string
}

// arnName matches a full Secrets Manager ARN and captures the secret's name
// (the ARN ends in "-" and six random characters).
var arnName = regexp.MustCompile(`^arn:[^:]+:secretsmanager:[^:]*:[^:]*:secret:(.+)-[A-Za-z0-9]{6}$`)

// maxSecretRequest bounds a request body; Secrets Manager allows 64 KiB values.
const maxSecretRequest = 1 << 20

// newSecretFront returns a front for moto at upstream, loading what file
// kept from earlier runs.
func newSecretFront(upstream, file string) (*secretFront, error) {
	f := &secretFront{upstream: upstream, file: file, client: &http.Client{Timeout: 30 * time.Second}, saved: map[string]string{}}
	if file == "" {
		return f, nil
	}
	raw, err := os.ReadFile(file)
	switch {
	case os.IsNotExist(err):
		return f, nil
	case err != nil:
		return nil, fmt.Errorf("read the dev secrets file: %w", err)
	}
	if err := json.Unmarshal(raw, &f.saved); err != nil {
		return nil, fmt.Errorf("the dev secrets file %s is not a JSON object of names and values: %w", file, err)
	}
	return f, nil
}

// Saved returns a copy of the kept secrets, name to value.
func (f *secretFront) Saved() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.saved)
}

// serve runs the front on a free local port until the returned stop is
// called, and returns its endpoint.
func (f *secretFront) serve() (endpoint string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("secrets front: %w", err)
	}
	srv := &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// ServeHTTP forwards one AWS JSON-protocol call to moto and records writes.
func (f *secretFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxSecretRequest))
	if err != nil {
		http.Error(w, "read request", http.StatusBadRequest)
		return
	}
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "secretsmanager.")
	var in map[string]any
	if json.Unmarshal(body, &in) == nil {
		if id, ok := in["SecretId"].(string); ok {
			if m := arnName.FindStringSubmatch(id); m != nil {
				in["SecretId"] = m[1]
				body, _ = json.Marshal(in)
			}
		}
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, f.upstream+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, "build request", http.StatusInternalServerError)
		return
	}
	for k, v := range r.Header {
		if k != "Content-Length" {
			req.Header[k] = v
		}
	}
	resp, err := f.client.Do(req)
	if err != nil {
		http.Error(w, "moto_server does not answer", http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		http.Error(w, "read moto_server's answer", http.StatusBadGateway)
		return
	}
	if resp.StatusCode == http.StatusOK {
		f.record(op, in)
	}
	maps.Copy(w.Header(), resp.Header)
	w.Header().Del("Content-Length")
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(out)
}

// record keeps what a successful call wrote.
func (f *secretFront) record(op string, in map[string]any) {
	if f.file == "" {
		return
	}
	name, _ := in["SecretId"].(string)
	if op == "CreateSecret" {
		name, _ = in["Name"].(string)
	}
	value, hasValue := in["SecretString"].(string)
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case (op == "CreateSecret" || op == "PutSecretValue") && name != "" && hasValue:
		f.saved[name] = value
	case op == "DeleteSecret" && name != "":
		delete(f.saved, name)
	default:
		return
	}
	_ = f.writeLocked()
}

// writeLocked replaces the file with the kept secrets.
func (f *secretFront) writeLocked() error {
	raw, err := json.Marshal(f.saved)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.file), ".secrets-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(raw); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), f.file)
}

// restore puts every kept secret into moto (through put), as a new run
// starts with an empty moto.
func (f *secretFront) restore(ctx context.Context, put func(ctx context.Context, name, value string) error) error {
	for name, value := range f.Saved() {
		if err := put(ctx, name, value); err != nil {
			return fmt.Errorf("restore secret %s: %w", name, err)
		}
	}
	return nil
}
