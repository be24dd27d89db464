package fakeupstream

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"net/http"
	"time"
)

// Embedding sizes: the default (small, to keep responses short) and the
// largest accepted in the dimensions parameter.
const (
	defaultEmbeddingDims = 8
	maxEmbeddingDims     = 4096
)

// embeddingRequest is the part of an embeddings request the fake reads.
type embeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	Dimensions     *int            `json:"dimensions"`
	EncodingFormat string          `json:"encoding_format"`
}

// embedding is one vector of an embeddings response: a []float64, or a
// base64 string of little-endian float32s.
type embedding struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"`
}

// embeddingUsage is an embeddings response's usage.
type embeddingUsage struct {
	PromptTokens int `json:"prompt_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

// embeddingList is an embeddings response.
type embeddingList struct {
	Object string          `json:"object"`
	Data   []embedding     `json:"data"`
	Model  string          `json:"model"`
	Usage  *embeddingUsage `json:"usage,omitempty"`
}

// embeddingInputs splits an embeddings input into its items: a string or a
// token array is one item, an array of strings or token arrays several.
func embeddingInputs(v any) []any {
	arr, ok := v.([]any)
	if !ok {
		if v == nil {
			return nil
		}
		return []any{v}
	}
	if len(arr) > 0 {
		if _, isNumber := arr[0].(float64); isNumber {
			return []any{arr} // one token array
		}
	}
	return arr
}

// vector is a deterministic unit vector of dims for input.
func vector(input any, dims int) []float64 {
	raw, err := json.Marshal(input)
	if err != nil {
		raw = nil
	}
	h := fnv.New64a()
	_, _ = h.Write(raw)
	rng := rand.New(rand.NewPCG(h.Sum64(), 0x5eed))
	v := make([]float64, dims)
	var norm float64
	for i := range v {
		v[i] = rng.Float64()*2 - 1
		norm += v[i] * v[i]
	}
	norm = math.Sqrt(norm)
	for i := range v {
		v[i] /= norm
	}
	return v
}

// base64Floats encodes v as base64 of little-endian float32s, as OpenAI's
// encoding_format "base64" does.
func base64Floats(v []float64) string {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(f)))
	}
	return base64.StdEncoding.EncodeToString(b)
}

// embeddings serves POST /v1/embeddings.
func (s *Server) embeddings(w http.ResponseWriter, r *http.Request, body []byte) {
	var req embeddingRequest
	if !decode(w, body, &req) || !requireModel(w, req.Model) {
		return
	}
	input := decodeAny(req.Input)
	items := embeddingInputs(input)
	if len(items) == 0 {
		writeParamError(w, "input", "input must be a non-empty string or array")
		return
	}
	dims := defaultEmbeddingDims
	if req.Dimensions != nil {
		if *req.Dimensions < 1 || *req.Dimensions > maxEmbeddingDims {
			writeParamError(w, "dimensions", "dimensions must be between 1 and 4096")
			return
		}
		dims = *req.Dimensions
	}
	if req.EncodingFormat != "" && req.EncodingFormat != "float" && req.EncodingFormat != "base64" {
		writeParamError(w, "encoding_format", "encoding_format must be float or base64")
		return
	}
	d, ok := checkDirectives(w, textOf(input))
	if !ok {
		return
	}
	resp := embeddingList{Object: "list", Data: make([]embedding, len(items)), Model: req.Model}
	for i, item := range items {
		v := vector(item, dims)
		var e any = v
		if req.EncodingFormat == "base64" {
			e = base64Floats(v)
		}
		resp.Data[i] = embedding{Object: "embedding", Index: i, Embedding: e}
	}
	if !d.noUsage {
		n := countTokens(input)
		resp.Usage = &embeddingUsage{PromptTokens: n, TotalTokens: n}
	}
	writeJSON(w, r, d, resp)
}

// moderationCategories are the categories a moderation result reports.
func moderationCategories() []string {
	return []string{
		"harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
		"self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors",
		"violence", "violence/graphic",
	}
}

// moderationResult is the verdict on one input.
type moderationResult struct {
	Flagged        bool               `json:"flagged"`
	Categories     map[string]bool    `json:"categories"`
	CategoryScores map[string]float64 `json:"category_scores"`
}

// moderationResponse is a moderations response.
type moderationResponse struct {
	ID      string             `json:"id"`
	Model   string             `json:"model"`
	Results []moderationResult `json:"results"`
}

// moderations serves POST /v1/moderations: nothing is flagged unless the
// input carries the directive fake:flag (then category "harassment" is).
func (s *Server) moderations(w http.ResponseWriter, r *http.Request, body []byte) {
	var req struct {
		Model string          `json:"model"`
		Input json.RawMessage `json:"input"`
	}
	if !decode(w, body, &req) {
		return
	}
	if req.Model == "" {
		req.Model = "omni-moderation-latest"
	}
	input := decodeAny(req.Input)
	if input == nil {
		writeParamError(w, "input", "input is required")
		return
	}
	d, ok := checkDirectives(w, textOf(input))
	if !ok {
		return
	}
	n := 1
	if arr, ok := input.([]any); ok {
		// An array of strings is one result each; content parts (objects)
		// make up a single multi-modal input.
		if len(arr) > 0 {
			if _, isString := arr[0].(string); isString {
				n = len(arr)
			}
		}
	}
	resp := moderationResponse{ID: s.nextID("modr"), Model: req.Model, Results: make([]moderationResult, n)}
	for i := range resp.Results {
		res := moderationResult{Categories: map[string]bool{}, CategoryScores: map[string]float64{}}
		for _, c := range moderationCategories() {
			res.Categories[c] = false
			res.CategoryScores[c] = 0.0001
		}
		if d.flag {
			res.Flagged, res.Categories["harassment"], res.CategoryScores["harassment"] = true, true, 0.97
		}
		resp.Results[i] = res
	}
	writeJSON(w, r, d, resp)
}

// model is one entry of the model list.
type model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// modelList is the GET /v1/models response.
type modelList struct {
	Object string  `json:"object"`
	Data   []model `json:"data"`
}

// models serves GET /v1/models.
func (s *Server) models(w http.ResponseWriter, r *http.Request, _ []byte) {
	created := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	resp := modelList{Object: "list", Data: make([]model, len(s.opts.Models))}
	for i, id := range s.opts.Models {
		resp.Data[i] = model{ID: id, Object: "model", Created: created, OwnedBy: "fakeupstream"}
	}
	writeJSON(w, r, directives{}, resp)
}
