package admin_test

// A class roster end to end on DynamoDB Local, through the real admin
// handler: 100 students from one CSV in one call, the same CSV again
// (nothing new), two identical rosters racing, a rotation, a bulk update of
// the monthly limit and the end-of-term revoke.

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stipend/stipend/infra/localstack/localtest"
	"github.com/stipend/stipend/shared/admin"
	"github.com/stipend/stipend/shared/admin/roster"
	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/dynamo"
	"github.com/stipend/stipend/shared/dynamo/dynamotest"
	"github.com/stipend/stipend/shared/money"
	"github.com/stipend/stipend/shared/provider"
)

const bulkAdminKey = "adm-bulk-integration-key-0123456789"

// rosterAnswer is the JSON answer of POST /api/v1/secret-keys/bulk.
type rosterAnswer struct {
	Summary struct {
		Students, Created, Existing, Rotated, Failed, UsersCreated int
	} `json:"summary"`
	Created, Existing, Rotated, Failed []struct {
		UserID, Name, Email, KeyID, Key, RevokedKeyID, PreviousKeyID, Error string
	}
}

type bulkEnv struct {
	t     *testing.T
	h     *admin.Handler
	store *dynamo.Store
}

func (e *bulkEnv) post(path, contentType, accept, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+bulkAdminKey)
	req.Header.Set("Content-Type", contentType)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

// roster sends a CSV roster and decodes the JSON answer, which must be a 200.
func (e *bulkEnv) roster(query, body string) rosterAnswer {
	e.t.Helper()
	rec := e.post("/api/v1/secret-keys/bulk?"+query, "text/csv", "", body)
	if rec.Code != 200 {
		e.t.Fatalf("roster: %d %s", rec.Code, rec.Body)
	}
	var a rosterAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
		e.t.Fatal(err)
	}
	return a
}

// jsonPost sends a JSON body and decodes a 200 answer into v.
func (e *bulkEnv) jsonPost(path, body string, v any) {
	e.t.Helper()
	rec := e.post(path, "application/json", "", body)
	if rec.Code != 200 {
		e.t.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
		e.t.Fatal(err)
	}
}

// checkKey checks that plaintext is a well-formed key naming keyID, stored
// with its hash, for userID.
func (e *bulkEnv) checkKey(userID, keyID, plaintext string) {
	e.t.Helper()
	id, err := apikey.Parse(plaintext)
	if err != nil || id != keyID {
		e.t.Fatalf("%s: key %q parses to %q, %v; keyId %s", userID, plaintext, id, err, keyID)
	}
	k, err := e.store.GetKey(context.Background(), keyID)
	if err != nil || !apikey.Matches(plaintext, k.Hash) || k.UserID != userID || k.Revoked {
		e.t.Fatalf("%s: stored key %+v, %v", userID, k, err)
	}
}

// classCSV is a roster of n students with ids prefix000..., written the way
// a spreadsheet exports it: BOM, CRLF, quoted names with commas.
func classCSV(prefix string, n int) string {
	var b strings.Builder
	b.WriteString("\ufeffuserId,name,email\r\n")
	for i := range n {
		fmt.Fprintf(&b, "%s%03d,\"Student, No. %d\",%s%03d@example.edu\r\n", prefix, i, i, prefix, i)
	}
	return b.String()
}

func timed(t *testing.T, what string, fn func()) {
	t.Helper()
	start := time.Now()
	fn()
	t.Logf("%-46s %v", what, time.Since(start).Round(time.Millisecond))
}

func TestRosterOnDynamoDB(t *testing.T) {
	endpoint := localtest.StartDynamoDB(t)
	ctx := context.Background()
	store := dynamotest.Store(t, endpoint, "stipend-bulk")
	if err := store.CreateProvider(ctx, &provider.Setting{ID: "p1", Name: "openai", Provider: provider.OpenAI, SecretID: "arn:p1", CreatedAt: 1}); err != nil {
		t.Fatal(err)
	}
	e := &bulkEnv{t: t, store: store, h: admin.New(admin.Config{
		Store:    store,
		AdminKey: func(context.Context) (string, error) { return bulkAdminKey, nil },
	})}
	const n = 100
	const defaults = "providerSettingIds=p1&costLimitInUsdLifetime=1&costLimitInUsdPerMonth=0.2&allowedModels=gpt-4o-mini&ttl=2160h&tags=cs101&user.costLimitInUsd=2"
	class := classCSV("stu", n)

	// One call creates the class, answered as CSV for a mail merge.
	var rows [][]string
	timed(t, "create 100 students (CSV in, CSV out)", func() {
		rec := e.post("/api/v1/secret-keys/bulk?"+defaults, "text/csv", "text/csv", class)
		if rec.Code != 200 {
			t.Fatalf("create: %d %s", rec.Code, rec.Body)
		}
		var err error
		if rows, err = csv.NewReader(rec.Body).ReadAll(); err != nil {
			t.Fatal(err)
		}
	})
	if len(rows) != n+1 || strings.Join(rows[0], ",") != "userId,name,email,keyId,key,status" {
		t.Fatalf("%d rows, header %q", len(rows), rows[0])
	}
	keyOf := map[string]string{}
	plain := map[string]bool{}
	for i, row := range rows[1:] {
		userID := fmt.Sprintf("stu%03d", i)
		if row[0] != userID || row[1] != fmt.Sprintf("Student, No. %d", i) || row[2] != userID+"@example.edu" || row[5] != "created" {
			t.Fatalf("row %d = %q", i, row)
		}
		e.checkKey(userID, row[3], row[4])
		keyOf[userID] = row[3]
		plain[row[4]] = true
	}
	if len(plain) != n {
		t.Fatalf("%d distinct keys", len(plain))
	}
	k, _ := store.GetKey(ctx, keyOf["stu042"])
	if k.CostLimitLifetime != money.Dollar || k.CostLimitPerMonth != 20*money.Cent || k.AllowedModels[0] != "gpt-4o-mini" ||
		k.Metadata["email"] != "stu042@example.edu" || strings.Join(k.Tags, ",") != "cs101,"+roster.Tag || k.ExpiresAt == 0 {
		t.Errorf("stored key %+v", k)
	}
	if u, err := store.GetUser(ctx, "stu042"); err != nil || u.CostLimitLifetime != 2*money.Dollar || u.Name != "Student, No. 42" {
		t.Errorf("stored user %+v, %v", u, err)
	}

	// The same CSV again: nothing new, everyone existing.
	var again rosterAnswer
	timed(t, "same 100 again (nothing new)", func() { again = e.roster(defaults, class) })
	if again.Summary.Existing != n || again.Summary.Created+again.Summary.Rotated+again.Summary.Failed+again.Summary.UsersCreated != 0 {
		t.Fatalf("again: %+v", again.Summary)
	}
	for _, x := range again.Existing {
		if x.KeyID != keyOf[x.UserID] || x.Key != "" {
			t.Fatalf("existing %+v", x)
		}
	}
	countKeys := func(prefix string) (total, active int) {
		var keys []*apikey.Key
		timed(t, "ListKeys", func() {
			var err error
			if keys, err = store.ListKeys(ctx); err != nil {
				t.Fatal(err)
			}
		})
		for _, k := range keys {
			if strings.HasPrefix(k.UserID, prefix) {
				total++
				if !k.Revoked {
					active++
				}
			}
		}
		return total, active
	}
	if total, _ := countKeys("stu"); total != n {
		t.Fatalf("%d keys stored, want %d", total, n)
	}

	// Two identical rosters at once, for a class nobody has enrolled yet,
	// and again for the first class: still one key per student.
	for _, tc := range []struct{ prefix, query string }{{"new", "providerSettingIds=p1&tags=cs102"}, {"stu", defaults}} {
		body := classCSV(tc.prefix, n)
		var answers [2]rosterAnswer
		timed(t, "two concurrent identical calls ("+tc.prefix+")", func() {
			var wg sync.WaitGroup
			for i := range answers {
				wg.Go(func() {
					rec := e.post("/api/v1/secret-keys/bulk?"+tc.query, "text/csv", "", body)
					if rec.Code != 200 {
						t.Errorf("concurrent: %d %s", rec.Code, rec.Body)
					}
					_ = json.Unmarshal(rec.Body.Bytes(), &answers[i])
				})
			}
			wg.Wait()
		})
		created := map[string]string{}
		for _, a := range answers {
			if a.Summary.Created+a.Summary.Existing != n || a.Summary.Failed != 0 {
				t.Fatalf("%s: %+v", tc.prefix, a.Summary)
			}
			for _, c := range a.Created {
				if _, dup := created[c.UserID]; dup {
					t.Fatalf("%s created twice", c.UserID)
				}
				created[c.UserID] = c.KeyID
				e.checkKey(c.UserID, c.KeyID, c.Key)
			}
		}
		if total, _ := countKeys(tc.prefix); total != n {
			t.Fatalf("%s: %d keys stored, want %d", tc.prefix, total, n)
		}
		t.Logf("%s: created %d, existing %d + %d", tc.prefix, len(created), answers[0].Summary.Existing, answers[1].Summary.Existing)
	}

	// Rotate one student: a new key, the old one revoked.
	var rot rosterAnswer
	timed(t, "rotate one of 100", func() { rot = e.roster(defaults+"&rotate=stu007", class) })
	if len(rot.Rotated) != 1 || rot.Summary.Existing != n-1 || rot.Rotated[0].RevokedKeyID != keyOf["stu007"] {
		t.Fatalf("rotate: %+v", rot)
	}
	e.checkKey("stu007", rot.Rotated[0].KeyID, rot.Rotated[0].Key)
	if old, _ := store.GetKey(ctx, keyOf["stu007"]); !old.Revoked || old.RevokedReason != "rotated" {
		t.Fatalf("old key %+v", old)
	}

	// Raise everyone's monthly limit.
	var upd struct{ Matched, Updated, Skipped, Failed int }
	timed(t, "bulk-update monthly limit of the class", func() {
		e.jsonPost("/api/v1/secret-keys/bulk-update", `{"tag": "cs101", "set": {"costLimitInUsdPerMonth": 0.5}}`, &upd)
	})
	if upd.Matched != n+1 || upd.Updated != n || upd.Skipped != 1 || upd.Failed != 0 {
		t.Fatalf("update: %+v", upd)
	}
	keys, _ := store.ListKeys(ctx)
	for _, k := range keys {
		if strings.HasPrefix(k.UserID, "stu") && !k.Revoked && k.CostLimitPerMonth != 50*money.Cent {
			t.Fatalf("key %s of %s: monthly limit %s", k.ID, k.UserID, k.CostLimitPerMonth)
		}
	}

	// End of term.
	var rev struct{ Matched, Revoked, AlreadyRevoked, Failed int }
	timed(t, "bulk-revoke the class", func() {
		e.jsonPost("/api/v1/secret-keys/bulk-revoke", `{"tag": "cs101", "reason": "end of term"}`, &rev)
	})
	if rev.Matched != n+1 || rev.Revoked != n || rev.AlreadyRevoked != 1 || rev.Failed != 0 {
		t.Fatalf("revoke: %+v", rev)
	}
	if total, active := countKeys("stu"); total != n+1 || active != 0 {
		t.Fatalf("after revoke: %d keys, %d active", total, active)
	}
	if _, active := countKeys("new"); active != n {
		t.Fatalf("the other class was revoked too: %d active", active)
	}

	// Next term, the same roster reissues every key.
	var next rosterAnswer
	timed(t, "next term: reissue 100 revoked keys", func() { next = e.roster(defaults, class) })
	if next.Summary.Created != n || next.Summary.UsersCreated != 0 {
		t.Fatalf("next term: %+v", next.Summary)
	}
	for _, c := range next.Created {
		if c.PreviousKeyID == "" {
			t.Fatalf("%+v", c)
		}
		e.checkKey(c.UserID, c.KeyID, c.Key)
	}
}
