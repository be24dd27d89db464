package fakeupstream

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Bounds on directive values, so that a typo cannot tie a server up.
const (
	maxDirectiveChunks   = 100_000
	maxDirectiveInterval = time.Minute
)

// directivePrefix starts every directive token.
const directivePrefix = "fake:"

// directives are the per-request instructions found in a prompt.
type directives struct {
	status      int // 0: none
	chunks      int
	chunksSet   bool
	interval    time.Duration
	intervalSet bool
	noUsage     bool
	hang        bool
	cut         bool
	flag        bool // moderation flags the input (category "harassment")
	errorEvent  bool // a stream ends with an error event instead of its finish
}

// parseDirectives reads the fake: tokens in text.
func parseDirectives(text string) (directives, error) {
	var d directives
	for _, tok := range strings.Fields(text) {
		rest, ok := strings.CutPrefix(tok, directivePrefix)
		if !ok || rest == "" {
			continue // a bare "fake:" is just a word
		}
		name, value, hasValue := strings.Cut(rest, "=")
		needValue := name == "status" || name == "chunks" || name == "interval"
		if needValue != hasValue {
			return directives{}, fmt.Errorf("directive %q: malformed", tok)
		}
		switch name {
		case "status":
			n, err := strconv.Atoi(value)
			if err != nil || n < 200 || n > 599 {
				return directives{}, fmt.Errorf("directive %q: want a status from 200 to 599", tok)
			}
			d.status = n
		case "chunks":
			n, err := strconv.Atoi(value)
			if err != nil || n < 0 || n > maxDirectiveChunks {
				return directives{}, fmt.Errorf("directive %q: want a count from 0 to %d", tok, maxDirectiveChunks)
			}
			d.chunks, d.chunksSet = n, true
		case "interval":
			iv, err := time.ParseDuration(value)
			if err != nil || iv < 0 || iv > maxDirectiveInterval {
				return directives{}, fmt.Errorf("directive %q: want a duration from 0 to %v", tok, maxDirectiveInterval)
			}
			d.interval, d.intervalSet = iv, true
		case "nousage":
			d.noUsage = true
		case "hang":
			d.hang = true
		case "cut":
			d.cut = true
		case "flag":
			d.flag = true
		case "errorevent":
			d.errorEvent = true
		default:
			return directives{}, fmt.Errorf("unknown directive %q", tok)
		}
	}
	return d, nil
}

// chunksOr returns the directive's chunk count or def.
func (d directives) chunksOr(def int) int {
	if d.chunksSet {
		return d.chunks
	}
	return def
}

// intervalOr returns the directive's interval or def.
func (d directives) intervalOr(def time.Duration) time.Duration {
	if d.intervalSet {
		return d.interval
	}
	return def
}

// decodeAny parses raw JSON into a generic value; empty or invalid input
// gives nil.
func decodeAny(raw json.RawMessage) any {
	if len(raw) == 0 {
		return nil
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return nil
	}
	return v
}

// textOf collects the text in a prompt-like JSON value: a string, an array
// of strings, or content parts such as {"type":"text","text":"..."} or
// {"type":"input_text","text":"..."}, joined by newlines. Token arrays
// contribute nothing.
func textOf(v any) string {
	var parts []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			parts = append(parts, v)
		case []any:
			for _, e := range v {
				walk(e)
			}
		case map[string]any:
			if t, ok := v["text"].(string); ok {
				parts = append(parts, t)
			}
		}
	}
	walk(v)
	return strings.Join(parts, "\n")
}

// countTokens is the fake tokenizer for a prompt-like JSON value: one token
// per whitespace-separated word of its text, and one per element of a token
// array.
func countTokens(v any) int {
	switch v := v.(type) {
	case string:
		return len(strings.Fields(v))
	case float64:
		return 1
	case []any:
		n := 0
		for _, e := range v {
			n += countTokens(e)
		}
		return n
	case map[string]any:
		return countTokens(v["text"])
	}
	return 0
}

// message is a chat message or a Responses input message.
type message struct {
	Type    string          `json:"type"`
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// perMessageTokens is the fake overhead of each message.
const perMessageTokens = 4

// lastUserText returns the text of the last message with role user.
func lastUserText(msgs []message) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == "user" {
			return textOf(decodeAny(msgs[i].Content))
		}
	}
	return ""
}

// messageTokens counts the words of all messages plus perMessageTokens each.
func messageTokens(msgs []message) int {
	n := 0
	for _, m := range msgs {
		n += countTokens(decodeAny(m.Content)) + perMessageTokens
	}
	return n
}
