// Package auditlog defines the audit trail's records: the Entry each admin
// change (or key read) leaves, and the Query and Page that list them. It
// holds no logic; the admin API writes entries and a store keeps them.
package auditlog

import (
	"errors"
	"time"
)

// Entry is one admin action: who did what to which items, and how it
// ended. It never holds a secret: Fields are the names of the request's
// fields, not their values.
type Entry struct {
	ID          string `json:"id"`
	CreatedAt   int64  `json:"createdAt"`   // unix seconds
	CreatedAtMs int64  `json:"createdAtMs"` // unix milliseconds; orders entries
	// Actor is who acted ("admin"); ActorKeyHash is a prefix of the SHA-256
	// of the bearer key used, which tells rotated admin keys apart.
	Actor        string `json:"actor"`
	ActorKeyHash string `json:"actorKeyHash"`
	// Action names what was done, like "key.create" or "provider.update".
	Action    string   `json:"action"`
	Method    string   `json:"method"`
	Path      string   `json:"path"` // without the query string
	TargetIDs []string `json:"targetIds"`
	// TargetsTruncated says TargetIDs holds only the first of many.
	TargetsTruncated bool     `json:"targetsTruncated,omitempty"`
	Fields           []string `json:"fields"`
	Status           int      `json:"status"`
	RequestID        string   `json:"requestId"`
}

// Query selects audit entries created in [Start, End), optionally only
// those naming TargetID, at most Limit of them (1..1000; 0 means 100),
// continuing after Cursor (from a previous Page) when set.
type Query struct {
	Start, End time.Time
	TargetID   string
	Cursor     string
	Limit      int
}

// Page is one page of entries, newest first. Cursor continues the
// listing; it is "" when there is nothing more.
type Page struct {
	Entries []*Entry
	Cursor  string
}

// ErrBadCursor reports a Query.Cursor that the store did not issue (the
// caller's mistake: a 400).
var ErrBadCursor = errors.New("invalid audit cursor")
