package template

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// functions maps each function's logical id in template.yaml to its package.
var functions = map[string]string{
	"ProxyFunction": "./functions/proxy",
	"AdminFunction": "./functions/admin",
	"ResetFunction": "./functions/reset",
}

// repoRoot walks up from the test's directory to the directory holding both
// go.mod and template.yaml.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if fileExists(filepath.Join(dir, "go.mod")) && fileExists(filepath.Join(dir, "template.yaml")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("repo root (go.mod + template.yaml) not found above the test directory")
		}
		dir = parent
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func readTemplate(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lookPath finds a tool that is part of the machine image; a missing tool is a
// failure, never a skip.
func lookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not on PATH (it is part of the machine image): %v", name, err)
	}
	return p
}

func TestCfnLint(t *testing.T) {
	t.Parallel()
	cfnLint := lookPath(t, "cfn-lint")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cfnLint, "template.yaml")
	cmd.Dir = repoRoot(t)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("cfn-lint template.yaml took %v", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("cfn-lint template.yaml: %v\n%s", err, out)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Fatalf("cfn-lint exited 0 but printed findings:\n%s", s)
	}
}

// resources splits the template's Resources section into one text block per
// logical id. It relies only on the template's two-space indentation.
func resources(t *testing.T, tmpl string) map[string]string {
	t.Helper()
	header := regexp.MustCompile(`^  ([A-Za-z0-9]+):\s*$`)
	blocks := map[string]string{}
	in, cur := false, ""
	var body strings.Builder
	flush := func() {
		if cur != "" {
			blocks[cur] = body.String()
		}
		body.Reset()
	}
	for _, line := range strings.Split(tmpl, "\n") {
		if !in {
			in = strings.TrimRight(line, " ") == "Resources:"
			continue
		}
		if line != "" && line[0] != ' ' && line[0] != '#' { // next top-level section
			break
		}
		if m := header.FindStringSubmatch(line); m != nil {
			flush()
			cur = m[1]
			continue
		}
		body.WriteString(line)
		body.WriteByte('\n')
	}
	flush()
	if len(blocks) == 0 {
		t.Fatal("no Resources found in template.yaml")
	}
	return blocks
}

func TestTemplateShape(t *testing.T) {
	t.Parallel()
	tmpl := readTemplate(t)
	for _, want := range []string{
		"Transform: AWS::Serverless-2016-10-31",
		"Runtime: provided.al2023",
		"Architectures: [arm64]",
		"Handler: bootstrap",
		"STIPEND_TABLE: !Ref Table",
		"InvokeMode: RESPONSE_STREAM",
		"InvokeMode: BUFFERED",
		"Schedule: cron(0 0 1 * ? *)",
		"Schedule: rate(5 minutes)",
		`Input: '{"task":"stale"}'`,
		"BillingMode: PAY_PER_REQUEST",
		"AttributeName: expiresAt",
		"IndexName: gsi1",
		"PointInTimeRecoveryEnabled: true",
		"SSEEnabled: true",
		`Name: !Sub "stipend/${AWS::StackName}/admin-key"`,
		"Value: !GetAtt ProxyFunctionUrl.FunctionUrl",
		"Value: !GetAtt AdminFunctionUrl.FunctionUrl",
	} {
		if !strings.Contains(tmpl, want) {
			t.Errorf("template.yaml lacks %q", want)
		}
	}
	if n := strings.Count(tmpl, "BuildMethod: makefile"); n != len(functions) {
		t.Errorf("BuildMethod: makefile appears %d times, want %d", n, len(functions))
	}
	for _, out := range []string{"ProxyUrl", "AdminUrl", "AdminKeySecretArn", "TableName"} {
		if !regexp.MustCompile(`(?m)^  ` + out + `:\s*$`).MatchString(tmpl) {
			t.Errorf("template.yaml has no output %s", out)
		}
	}

	res := resources(t, tmpl)
	if table := res["Table"]; !strings.Contains(table, "Type: AWS::DynamoDB::Table") ||
		!strings.Contains(table, "DeletionPolicy: Retain") || !strings.Contains(table, "UpdateReplacePolicy: Retain") {
		t.Errorf("Table must be an AWS::DynamoDB::Table retained on delete and replace:\n%s", table)
	}

	env := map[string][]string{
		"ProxyFunction": {"STIPEND_SECRET_PREFIX", "STIPEND_EVENT_RETENTION_DAYS"},
		"AdminFunction": {"STIPEND_SECRET_PREFIX", "STIPEND_ADMIN_KEY_SECRET", "STIPEND_EVENT_RETENTION_DAYS"},
		"ResetFunction": {"STIPEND_EVENT_RETENTION_DAYS"},
	}
	for fn := range functions {
		body, ok := res[fn]
		if !ok {
			t.Errorf("no resource %s", fn)
			continue
		}
		for _, want := range []string{
			"Type: AWS::Serverless::Function",
			"BuildMethod: makefile",
			"CodeUri: .",
			"LogGroup: !Ref " + fn + "LogGroup",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("%s lacks %q", fn, want)
			}
		}
		for _, v := range env[fn] {
			if !strings.Contains(body, v+":") {
				t.Errorf("%s has no environment variable %s", fn, v)
			}
		}
		if strings.Contains(body, "ManagedPolicyArns") || regexp.MustCompile(`(?m)^\s+- [A-Za-z]+Policy:?\s*$`).MatchString(body) {
			t.Errorf("%s uses a managed policy; use inline least-privilege statements", fn)
		}
		lg, ok := res[fn+"LogGroup"]
		if !ok {
			t.Errorf("%s has no log group resource %sLogGroup", fn, fn)
			continue
		}
		for _, want := range []string{
			"Type: AWS::Logs::LogGroup",
			`LogGroupName: !Sub "/aws/lambda/`,
			"RetentionInDays: !Ref LogRetentionDays",
		} {
			if !strings.Contains(lg, want) {
				t.Errorf("%sLogGroup lacks %q", fn, want)
			}
		}
	}
	if !strings.Contains(res["ProxyFunction"], "InvokeMode: RESPONSE_STREAM") {
		t.Error("ProxyFunction's URL must stream (InvokeMode: RESPONSE_STREAM)")
	}
	if !strings.Contains(res["ResetFunction"], "Schedule: cron(0 0 1 * ? *)") {
		t.Error("ResetFunction must run on the monthly schedule")
	}
}

func runMake(t *testing.T, args ...string) string {
	t.Helper()
	mk := lookPath(t, "make")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, mk, append([]string{"--no-print-directory", "-C", repoRoot(t)}, args...)...)
	cmd.Env = append(os.Environ(), "MAKEFLAGS=")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func TestMakefileBuildTargets(t *testing.T) {
	t.Parallel()
	artifacts := t.TempDir()
	for fn, pkg := range functions {
		out := runMake(t, "-n", "build-"+fn, "ARTIFACTS_DIR="+artifacts)
		for _, want := range []string{
			"GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0", "go build", "-tags lambda.norpc",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("make -n build-%s: output lacks %q:\n%s", fn, want, out)
			}
		}
		target := regexp.MustCompile(`(?m)-o ` + regexp.QuoteMeta(artifacts+"/bootstrap "+pkg) + `$`)
		if !target.MatchString(out) {
			t.Errorf("make -n build-%s does not build %s into $(ARTIFACTS_DIR)/bootstrap:\n%s", fn, pkg, out)
		}
	}

	all := runMake(t, "-n", "build")
	for _, name := range []string{"proxy", "admin", "reset"} {
		if !regexp.MustCompile(`(?m)-o build/` + name + `/bootstrap \./functions/` + name + `$`).MatchString(all) {
			t.Errorf("make -n build does not build ./functions/%s into build/%s/bootstrap:\n%s", name, name, all)
		}
	}

	test := runMake(t, "-n", "test")
	for _, want := range []string{"go vet ./...", "go test -race -count=1 -timeout 12m ./...", "cfn-lint template.yaml"} {
		if !strings.Contains(test, want) {
			t.Errorf("make -n test lacks %q:\n%s", want, test)
		}
	}

	help := runMake(t, "help")
	for _, target := range []string{"build", "test", "lint", "dev", "bench"} {
		if !regexp.MustCompile(`(?m)^\s+` + target + `\s`).MatchString(help) {
			t.Errorf("make help does not list %s:\n%s", target, help)
		}
	}
}

var proxyKey = regexp.MustCompile(`^Bearer sk-stp-[a-z2-7]{26}_[a-z2-7]{52}$`)

func TestEvents(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	files, err := filepath.Glob(filepath.Join(root, "events", "*", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no events/*/*.json files")
	}
	readme, err := os.ReadFile(filepath.Join(root, "events", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		rel, _ := filepath.Rel(filepath.Join(root, "events"), f)
		rel = filepath.ToSlash(rel)
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(b) {
			t.Errorf("events/%s is not valid JSON", rel)
			continue
		}
		if !strings.Contains(string(readme), rel) {
			t.Errorf("events/README.md does not describe %s", rel)
		}
		if strings.HasPrefix(rel, "proxy/") || strings.HasPrefix(rel, "admin/") {
			checkURLEvent(t, rel, b)
		}
	}
	for _, want := range []string{
		"proxy/chat-stream.json", "proxy/chat-base64.json", "proxy/models.json",
		"admin/list-keys.json", "admin/create-provider.json",
		"reset/monthly.json", "reset/stale.json",
	} {
		if !fileExists(filepath.Join(root, "events", filepath.FromSlash(want))) {
			t.Errorf("events/%s is missing", want)
		}
	}
}

// checkURLEvent checks a Lambda function URL request event (payload format 2.0).
func checkURLEvent(t *testing.T, rel string, b []byte) {
	t.Helper()
	var ev struct {
		Version        string            `json:"version"`
		RouteKey       string            `json:"routeKey"`
		RawPath        string            `json:"rawPath"`
		RawQueryString *string           `json:"rawQueryString"`
		Headers        map[string]string `json:"headers"`
		RequestContext struct {
			DomainName string `json:"domainName"`
			RequestID  string `json:"requestId"`
			TimeEpoch  int64  `json:"timeEpoch"`
			HTTP       struct {
				Method, Path, Protocol, SourceIP string
			} `json:"http"`
		} `json:"requestContext"`
		Body            *string `json:"body"`
		IsBase64Encoded bool    `json:"isBase64Encoded"`
	}
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Errorf("events/%s: %v", rel, err)
		return
	}
	if ev.Version != "2.0" || ev.RouteKey != "$default" || ev.RawQueryString == nil {
		t.Errorf("events/%s: want version 2.0, routeKey $default and a rawQueryString", rel)
	}
	if ev.RawPath == "" || ev.RawPath != ev.RequestContext.HTTP.Path || ev.RequestContext.HTTP.Method == "" ||
		ev.RequestContext.DomainName == "" || ev.RequestContext.RequestID == "" || ev.RequestContext.TimeEpoch == 0 {
		t.Errorf("events/%s: incomplete requestContext", rel)
	}
	for h := range ev.Headers {
		if h != strings.ToLower(h) {
			t.Errorf("events/%s: header %q is not lower case", rel, h)
		}
	}
	auth := ev.Headers["authorization"]
	switch {
	case strings.HasPrefix(rel, "proxy/") && !proxyKey.MatchString(auth):
		t.Errorf("events/%s: authorization %q is not a stipend key", rel, auth)
	case strings.HasPrefix(rel, "admin/") && auth != "Bearer test-admin-key-0123456789":
		t.Errorf("events/%s: authorization %q is not the test admin key", rel, auth)
	}
	if ev.Body == nil {
		if ev.RequestContext.HTTP.Method == "POST" {
			t.Errorf("events/%s: POST without a body", rel)
		}
		return
	}
	body := []byte(*ev.Body)
	if ev.IsBase64Encoded {
		var err error
		if body, err = base64.StdEncoding.DecodeString(*ev.Body); err != nil {
			t.Errorf("events/%s: body is not base64: %v", rel, err)
			return
		}
	}
	var req struct {
		Stream *bool `json:"stream"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		t.Errorf("events/%s: body is not a JSON object: %v", rel, err)
		return
	}
	if ev.Headers["content-type"] != "application/json" {
		t.Errorf("events/%s: a body without content-type application/json", rel)
	}
	switch rel {
	case "proxy/chat-stream.json":
		if req.Stream == nil || !*req.Stream || ev.IsBase64Encoded {
			t.Errorf("events/%s: want a plain-text body with \"stream\": true", rel)
		}
	case "proxy/chat-base64.json":
		if req.Stream != nil && *req.Stream || !ev.IsBase64Encoded {
			t.Errorf("events/%s: want a base64 body of a non-streaming request", rel)
		}
	}
}
