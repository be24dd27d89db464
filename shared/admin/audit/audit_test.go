package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stipend/stipend/shared/admin/request"
	"github.com/stipend/stipend/shared/apikey"
)

func TestAuditAction(t *testing.T) {
	revoke := map[string]json.RawMessage{"revoked": json.RawMessage(" true ")}
	unrevoke := map[string]json.RawMessage{"revoked": json.RawMessage("false")}
	tests := []struct {
		pattern string
		body    map[string]json.RawMessage
		want    string
	}{
		{"POST /api/v1/providers", nil, "provider.create"},
		{"PATCH /api/v1/providers/{id}", nil, "provider.update"},
		{"POST /api/v1/secret-keys", nil, "key.create"},
		{"POST /api/v1/secret-keys/bulk", nil, "key.bulk_create"},
		{"PATCH /api/v1/secret-keys/{keyId}", nil, "key.update"},
		{"PATCH /api/v1/secret-keys/{keyId}", revoke, "key.revoke"},
		{"PATCH /api/v1/secret-keys/{keyId}", unrevoke, "key.update"},
		{"DELETE /api/v1/secret-keys/{keyId}", nil, "key.archive"},
		{"GET /api/v1/secret-keys/{keyId}/key", nil, "key.retrieve"},
		{"POST /api/v1/users", nil, "user.create"},
		{"PATCH /api/v1/users/{userId}", revoke, "user.revoke"},
		{"PATCH /api/v1/organization", nil, "org.update"},
		{"POST /key/generate", nil, "key.create"},
		{"POST /user/new", nil, "user.create"},
		// Routes this file does not know are named from their path.
		{"POST /api/v1/widgets", nil, "widget.create"},
		{"PATCH /api/v1/widgets/{id}", nil, "widget.update"},
		{"DELETE /api/v1/users/{userId}", nil, "user.delete"},
		{"PUT /api/v1/secret-keys/{keyId}/thing", nil, "key.create"},
		// Reads are not audited, even as POSTs.
		{"POST /api/v1/reporting/events", nil, ""},
		{"POST /api/v1/reporting/events-by-day", nil, ""},
		{"GET /api/v1/secret-keys", nil, ""},
		{"GET /api/v1/audit", nil, ""},
		{"GET /key/info", nil, ""},
		{"/", nil, ""},
		{"", nil, ""},
	}
	for _, tc := range tests {
		if got := auditAction(tc.pattern, tc.body); got != tc.want {
			t.Errorf("auditAction(%q) = %q, want %q", tc.pattern, got, tc.want)
		}
	}
}

func TestResponseIDsAndTargets(t *testing.T) {
	_, plain := apikey.Generate()
	tests := []struct {
		name string
		body string
		want []string
	}{
		{"created key", `{"id":"k1","keyId":"k1","key":"` + plain + `","userId":"u1","settingIds":["p1"]}`, []string{"k1", "u1"}},
		{"array", `[{"keyId":"a"},{"keyId":"b"},3]`, []string{"a", "b"}},
		{"bulk", `{"created":[{"userId":"s1","keyId":"k1","key":"` + plain + `"}],"existing":[{"userId":"s2","keyId":"k2"}]}`, []string{"s1", "k1", "s2", "k2"}},
		{"litellm", `{"key":"` + plain + `","expires":null,"user_id":"bob"}`, []string{"bob"}},
		{"key in an id field", `{"id":"` + plain + `"}`, []string{}},
		{"not json", `nope`, []string{}},
		{"odd ids", `{"id":"has space","keyId":"","userId":"` + strings.Repeat("x", 200) + `"}`, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := cleanTargets(responseIDs([]byte(tc.body)))
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("targets = %q, want %q", got, want)
			}
		})
	}
	many := make([]string, auditMaxTargets+10)
	for i := range many {
		many[i] = fmt.Sprintf("id%d", i)
	}
	got, truncated := cleanTargets(append(many, many...))
	if len(got) != auditMaxTargets || !truncated {
		t.Errorf("%d targets, truncated %v", len(got), truncated)
	}
}

// TestPeekFieldsKeepsBody: the route still reads the whole body after the
// audit looked at it, including bodies over the size limit.
func TestPeekFieldsKeepsBody(t *testing.T) {
	for _, body := range []string{`{"b":1,"a":{"nested":"x"},"sk-stp-x":1,"bad name":2}`, `[1,2]`, ``, strings.Repeat("x", request.MaxBodyBytes+100)} {
		r := httptest.NewRequest("POST", "/", strings.NewReader(body))
		_, fields := peekFields(r)
		rest, _ := io.ReadAll(r.Body)
		if string(rest) != body {
			t.Errorf("body after peek has %d bytes, want %d", len(rest), len(body))
		}
		if strings.HasPrefix(body, "{") && !reflect.DeepEqual(fields, []string{"a", "b"}) {
			t.Errorf("fields = %q", fields)
		}
	}
}

// TestNameChecksMatchPatterns checks validFieldName and validTargetID
// accept exactly what the patterns they replaced match, on edge cases and
// random strings over the characters the patterns tell apart.
func TestNameChecksMatchPatterns(t *testing.T) {
	checks := []struct {
		name    string
		pattern *regexp.Regexp
		valid   func(string) bool
	}{
		{"field name", regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`), validFieldName},
		{"target id", regexp.MustCompile(`^[A-Za-z0-9._@+-]{1,128}$`), validTargetID},
	}
	cases := []string{"", "a", "Z9", "a b", "a\n", "é", "\xff", "key_1.2-3", "u@x+y", strings.Repeat("a", 64),
		strings.Repeat("a", 65), strings.Repeat("b", 128), strings.Repeat("b", 129), "a/b", "a:b", "@", "+", "_", ".", "-"}
	const alphabet = "aZ09_.-@+ /:\n\x00é\xff"
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		n := rng.IntN(140)
		if rng.IntN(2) == 0 {
			n = rng.IntN(8)
		}
		var b strings.Builder
		for range n {
			// mostly allowed bytes, so long valid strings occur too
			if rng.IntN(20) == 0 {
				b.WriteByte(alphabet[rng.IntN(len(alphabet))])
			} else {
				b.WriteByte("aZ09_.-@+"[rng.IntN(9)])
			}
		}
		cases = append(cases, b.String())
	}
	for _, c := range checks {
		for _, s := range cases {
			if got, want := c.valid(s), c.pattern.MatchString(s); got != want {
				t.Errorf("%s %q: %v, the pattern says %v", c.name, s, got, want)
			}
		}
	}
}
