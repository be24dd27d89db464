package proxy

// Reading and checking a client's request body before anything is reserved
// or forwarded. Every refusal here is a 400 invalid_request whose message
// names the field and the rule in the client's terms ("stream must be a
// boolean"), never the proxy's Go types, and whose param is the field.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/stipend/stipend/shared/apierror"
	"github.com/stipend/stipend/shared/jsonscan"
	"github.com/stipend/stipend/shared/pricing"
)

// request is what the proxy needs to know of a client's request body.
type request struct {
	Model         string `json:"model"`
	Stream        bool   `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	MaxTokens           *int64 `json:"max_tokens"`
	MaxCompletionTokens *int64 `json:"max_completion_tokens"`
	MaxOutputTokens     *int64 `json:"max_output_tokens"`
	N                   *int64 `json:"n"`
	BestOf              *int64 `json:"best_of"`
}

// jsonKind is a set of JSON value types a field may hold.
type jsonKind uint8

const (
	kString jsonKind = 1 << iota
	kBool
	kInteger
	kObject
	kArray
	kFraction // a number that is not an int64; no rule allows it
)

// describe names the kinds for a message: "a string or an array".
func (k jsonKind) describe() string {
	var names []string
	for _, n := range []struct {
		k    jsonKind
		name string
	}{{kString, "a string"}, {kBool, "a boolean"}, {kInteger, "an integer"}, {kObject, "an object"}, {kArray, "an array"}} {
		if k&n.k != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, " or ")
}

// fieldRule is one top-level field and the JSON types it may hold (null
// always allowed: it means absent).
type fieldRule struct {
	name string
	kind jsonKind
}

// commonFields are the fields the proxy itself reads, on every path.
var commonFields = []fieldRule{
	{"model", kString}, {"stream", kBool}, {"stream_options", kObject},
	{"max_tokens", kInteger}, {"max_completion_tokens", kInteger}, {"max_output_tokens", kInteger},
	{"n", kInteger}, {"best_of", kInteger},
}

// contentFields are the input fields the tokenizer reads on path.
func contentFields(path string) []fieldRule {
	switch path {
	case "/v1/chat/completions":
		return []fieldRule{{"messages", kArray}, {"tools", kArray}, {"functions", kArray}}
	case "/v1/messages":
		return []fieldRule{{"messages", kArray}, {"system", kString | kArray}, {"tools", kArray}}
	case "/v1/completions":
		return []fieldRule{{"prompt", kString | kArray}, {"suffix", kString}}
	case "/v1/embeddings", "/v1/moderations":
		return []fieldRule{{"input", kString | kArray}}
	case "/v1/responses":
		return []fieldRule{{"input", kString | kArray}, {"instructions", kString}, {"tools", kArray}}
	}
	return nil
}

// inputField is the field that holds a path's prompt, for messages.
func inputField(path string) string {
	switch path {
	case "/v1/chat/completions", "/v1/messages":
		return "messages"
	case "/v1/completions":
		return "prompt"
	}
	return "input"
}

// badField is a 400 invalid_request about one field.
func badField(field, format string, args ...any) error {
	return apierror.New(http.StatusBadRequest, apierror.CodeInvalidRequest, fmt.Sprintf(format, args...)).WithParam(field)
}

// kindOf returns the JSON type of a valid JSON value, or 0 for null.
func kindOf(v json.RawMessage) jsonKind {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return 0
	}
	switch v[0] {
	case 'n':
		return 0
	case '"':
		return kString
	case 't', 'f':
		return kBool
	case '{':
		return kObject
	case '[':
		return kArray
	}
	if _, err := strconv.ParseInt(string(v), 10, 64); err == nil {
		return kInteger
	}
	return kFraction
}

// checkKind refuses v unless it is null or of a kind in want.
func checkKind(field string, v json.RawMessage, want jsonKind) error {
	k := kindOf(v)
	if k == 0 || k&want != 0 {
		return nil
	}
	return badField(field, "%s must be %s", field, want.describe())
}

// checkCase refuses a top-level field whose name differs from name only in
// case ("Messages"): the provider reads names exactly and ignores or refuses
// such a field, while Go's JSON decoding (the tokenizer's) would fold it
// onto name, so the proxy would count a different input than the model gets.
func checkCase(obj map[string]json.RawMessage, name string) error {
	for k := range obj {
		if k != name && strings.EqualFold(k, name) {
			return badField(k, "unknown field %s; field names are case-sensitive (did you mean %s?)", k, name)
		}
	}
	return nil
}

// parseRequest reads what the proxy needs from a request body on path,
// after checking that the body is UTF-8 JSON object and that every field the
// proxy or its tokenizer reads has the JSON type the API expects.
func parseRequest(path string, body []byte) (request, error) {
	var req request
	if !utf8.Valid(body) {
		return req, apierror.New(http.StatusBadRequest, apierror.CodeInvalidRequest, "request body is not valid UTF-8")
	}
	if !json.Valid(body) {
		return req, apierror.New(http.StatusBadRequest, apierror.CodeInvalidRequest, "request body is not valid JSON")
	}
	obj, err := members(body)
	if err != nil {
		return req, apierror.New(http.StatusBadRequest, apierror.CodeInvalidRequest, "request body must be a JSON object")
	}
	for _, rules := range [][]fieldRule{commonFields, contentFields(path)} {
		for _, f := range rules {
			if err := checkKind(f.name, obj[f.name], f.kind); err != nil {
				return req, err
			}
			if err := checkCase(obj, f.name); err != nil {
				return req, err
			}
		}
	}
	if raw := obj["stream_options"]; kindOf(raw) == kObject {
		var opts map[string]json.RawMessage
		if err := json.Unmarshal(raw, &opts); err == nil {
			if err := checkKind("stream_options.include_usage", opts["include_usage"], kBool); err != nil {
				return req, err
			}
		}
	}
	if path == "/v1/chat/completions" || path == "/v1/messages" {
		if i := notObject(obj["messages"]); i >= 0 {
			return req, badField("messages", "messages[%d] must be an object", i)
		}
	}
	// Each field is read from its exact name, as the provider reads it:
	// decoding the body into the struct would also match "Model" or
	// "STREAM" (encoding/json folds case), so {"model":"o1","Model":"gpt-4o-mini"}
	// would be priced and allowed as gpt-4o-mini while the provider ran o1.
	if err := req.read(obj); err != nil {
		// The checks above make this unreachable; never show Go's wording.
		return req, apierror.Wrap(err, http.StatusBadRequest, apierror.CodeInvalidRequest, "request body could not be read")
	}
	return req, nil
}

// members splits body, valid JSON, into its top-level members, the last
// of a repeated name counting: by jsonscan, whose values are body's own
// bytes, or (a name written with an escape) by json.Unmarshal, which
// unescapes it. The values are only read.
func members(body []byte) (map[string]json.RawMessage, error) {
	obj := make(map[string]json.RawMessage, 8)
	if jsonscan.Object(body, func(name, value []byte) bool {
		obj[string(name)] = value
		return true
	}) {
		return obj, nil
	}
	obj = nil
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return nil, errors.New("not a JSON object")
	}
	return obj, nil
}

// notObject returns the index of the first element of the JSON array
// msgs (valid JSON) that is not an object, or -1: walked in place by
// jsonscan, or, past what jsonscan walks (nesting deeper than
// jsonscan.MaxDepth), by json.Unmarshal into copies. A msgs that is not
// an array has none.
func notObject(msgs json.RawMessage) int {
	i, bad := 0, -1
	if jsonscan.Array(msgs, func(m []byte) bool {
		if kindOf(m) != kObject {
			bad = i
			return false
		}
		i++
		return true
	}) || bad >= 0 {
		return bad
	}
	var all []json.RawMessage
	if json.Unmarshal(msgs, &all) != nil {
		return -1
	}
	for i, m := range all {
		if kindOf(m) != kObject {
			return i
		}
	}
	return -1
}

// read fills req from the body's top-level fields, matching names exactly.
func (req *request) read(obj map[string]json.RawMessage) error {
	for _, f := range []struct {
		name string
		dst  any
	}{
		{"model", &req.Model}, {"stream", &req.Stream},
		{"max_tokens", &req.MaxTokens}, {"max_completion_tokens", &req.MaxCompletionTokens},
		{"max_output_tokens", &req.MaxOutputTokens}, {"n", &req.N}, {"best_of", &req.BestOf},
	} {
		if raw, ok := obj[f.name]; ok {
			if err := json.Unmarshal(raw, f.dst); err != nil {
				return fmt.Errorf("field %s: %w", f.name, err)
			}
		}
	}
	if raw := obj["stream_options"]; kindOf(raw) == kObject {
		var opts map[string]json.RawMessage
		if err := json.Unmarshal(raw, &opts); err != nil {
			return fmt.Errorf("field stream_options: %w", err)
		}
		req.StreamOptions = &struct {
			IncludeUsage bool `json:"include_usage"`
		}{}
		if v, ok := opts["include_usage"]; ok {
			if err := json.Unmarshal(v, &req.StreamOptions.IncludeUsage); err != nil {
				return fmt.Errorf("field stream_options.include_usage: %w", err)
			}
		}
	}
	return nil
}

// maxChoices bounds n and best_of (OpenAI's own maximum for n).
const maxChoices = 128

// textBytesPerToken bounds how many bytes of non-blank text one token
// stands for in a realistic prompt: English averages about 4 with OpenAI's
// encodings, so a prompt with more than this many bytes per token of the
// context window is at least about twice too long for the model.
const textBytesPerToken = 8

// checkValues refuses values the provider would refuse: output caps below 1
// or above the model's maximum output, n or best_of outside 1..128, and a
// prompt far beyond the model's context window. It runs before anything is
// counted, reserved or forwarded.
func checkValues(path string, req *request, body []byte, price pricing.Price) error {
	for _, f := range []struct {
		name string
		v    *int64
	}{{"max_tokens", req.MaxTokens}, {"max_completion_tokens", req.MaxCompletionTokens}, {"max_output_tokens", req.MaxOutputTokens}} {
		switch {
		case f.v == nil:
		case *f.v < 1:
			return badField(f.name, "%s must be at least 1", f.name)
		case generates(path) && price.MaxOutputTokens > 0 && *f.v > price.MaxOutputTokens:
			return badField(f.name, "%s must be at most %d, the maximum output of %s", f.name, price.MaxOutputTokens, req.Model)
		}
	}
	for _, f := range []struct {
		name string
		v    *int64
	}{{"n", req.N}, {"best_of", req.BestOf}} {
		if f.v != nil && (*f.v < 1 || *f.v > maxChoices) {
			return badField(f.name, "%s must be from 1 to %d", f.name, maxChoices)
		}
	}
	return checkContext(path, req.Model, body, price)
}

// checkContext refuses a prompt far beyond the model's context window
// without tokenizing it: a body no longer than the window times
// textBytesPerToken passes at once; a longer one is parsed (far cheaper
// than tokenizing) and its non-blank text measured. Long strings without
// any blank (base64 images, audio and files, which are not billed by their
// length) are not counted. A conversation counts as a whole; the batch
// endpoints (completions, embeddings, moderations) take several inputs, so
// there the longest single string counts.
func checkContext(path, model string, body []byte, price pricing.Price) error {
	bound := price.ContextWindow * textBytesPerToken
	if bound <= 0 || int64(len(body)) <= bound {
		return nil
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return nil // parseRequest already checked the body; nothing to measure
	}
	var total, longest int64
	measureText(v, &total, &longest)
	n := total
	switch path {
	case "/v1/completions", "/v1/embeddings", "/v1/moderations":
		n = longest
	}
	if n <= bound {
		return nil
	}
	field := inputField(path)
	return badField(field, "%s is far longer than %s's context window of %d tokens (about %d tokens or more)",
		field, model, price.ContextWindow, n/textBytesPerToken)
}

// blobBytes is the length from which a string without blanks is taken for
// encoded data rather than text.
const blobBytes = 1024

// measureText adds up the non-blank bytes of the string values in v (not
// object keys) into total, and the most in one string into longest.
func measureText(v any, total, longest *int64) {
	switch x := v.(type) {
	case string:
		if strings.HasPrefix(x, "data:") || len(x) >= blobBytes && !strings.ContainsAny(x, " \t\r\n") {
			return
		}
		n := int64(len(x))
		for i := 0; i < len(x); i++ {
			switch x[i] {
			case ' ', '\t', '\r', '\n':
				n--
			}
		}
		*total += n
		*longest = max(*longest, n)
	case []any:
		for _, e := range x {
			measureText(e, total, longest)
		}
	case map[string]any:
		for _, e := range x {
			measureText(e, total, longest)
		}
	}
}

// inputError turns the tokenizer's complaint about a body parseRequest let
// through (a nested field of the wrong type) into the client's 400, naming
// the field and never Go's types.
func inputError(err error) error {
	const msg = "the request's input could not be read"
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) && ute.Field != "" {
		return apierror.Wrap(err, http.StatusBadRequest, apierror.CodeInvalidRequest,
			fmt.Sprintf("%s has the wrong type: a JSON %s is not allowed there", ute.Field, ute.Value)).WithParam(ute.Field)
	}
	detail := err.Error()
	if _, rest, ok := strings.Cut(detail, " request: "); ok {
		detail = rest // drop "tokenizer: /v1/... request: "
	}
	if strings.Contains(detail, "json:") || strings.Contains(detail, "Go ") || strings.HasPrefix(detail, "tokenizer:") {
		return apierror.Wrap(err, http.StatusBadRequest, apierror.CodeInvalidRequest, msg)
	}
	return apierror.Wrap(err, http.StatusBadRequest, apierror.CodeInvalidRequest, msg+": "+detail)
}

// generates reports whether path produces billed output tokens.
func generates(path string) bool {
	return path != "/v1/embeddings" && path != "/v1/moderations"
}

// outputField is the body field that caps output on path.
func outputField(path string, req *request) string {
	switch path {
	case "/v1/responses":
		return "max_output_tokens"
	case "/v1/chat/completions":
		if req.MaxTokens != nil && req.MaxCompletionTokens == nil {
			return "max_tokens"
		}
		return "max_completion_tokens"
	}
	return "max_tokens"
}

// choices is how many completions one request is billed for.
func (req *request) choices() int64 {
	n := int64(1)
	if req.N != nil && *req.N > n {
		n = *req.N
	}
	if req.BestOf != nil && *req.BestOf > n {
		n = *req.BestOf
	}
	return n
}

// maxOutput is the output cap the request asked for (0 when none).
func (req *request) maxOutput() int64 {
	for _, v := range []*int64{req.MaxCompletionTokens, req.MaxOutputTokens, req.MaxTokens} {
		if v != nil && *v > 0 {
			return *v
		}
	}
	return 0
}

// setCap records a lowered output cap in req, as the body now says.
func setCap(req *request, path string, n int64) {
	switch outputField(path, req) {
	case "max_output_tokens":
		req.MaxOutputTokens = &n
	case "max_completion_tokens":
		req.MaxCompletionTokens = &n
	default:
		req.MaxTokens = &n
	}
}
