package fakeupstream

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
)

// azurePrefix starts an Azure OpenAI deployment URL:
// /openai/deployments/{deployment}/{chat/completions|completions|embeddings}.
const azurePrefix = "/openai/deployments/"

// azureGAVersions are the generally available api-versions the fake
// accepts; any "YYYY-MM-DD-preview" is accepted too.
var azureGAVersions = map[string]bool{
	"2022-12-01": true, "2023-05-15": true, "2024-02-01": true,
	"2024-06-01": true, "2024-10-21": true,
}

var azurePreviewVersion = regexp.MustCompile(`^20[0-9]{2}-[01][0-9]-[0-3][0-9]-preview$`)

// isAzurePath reports the paths answered as Azure OpenAI deployments.
func isAzurePath(path string) bool { return strings.HasPrefix(path, azurePrefix) }

// writeAzureError answers status with Azure's error body, which carries a
// code and a message and no type.
func writeAzureError(w http.ResponseWriter, status int, code, message string) {
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"code": code, "message": message}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// azure serves POST /openai/deployments/{deployment}/... like Azure OpenAI:
// the api-key header (when an API key is set), a required known
// api-version query parameter, and the deployment's model (Options.Deployments,
// or the deployment name itself when that map is nil) in place of the
// body's. It then answers like the matching OpenAI endpoint.
func (s *Server) azure(w http.ResponseWriter, r *http.Request, body []byte, readErr error) {
	if s.opts.APIKey != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Api-Key")), []byte(s.opts.APIKey)) != 1 {
		writeAzureError(w, http.StatusUnauthorized, "401",
			"Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.")
		return
	}
	v := r.URL.Query().Get("api-version")
	switch {
	case v == "":
		writeAzureError(w, http.StatusBadRequest, "BadRequest", "Missing required query parameter: api-version")
		return
	case !azureGAVersions[v] && !azurePreviewVersion.MatchString(v):
		writeAzureError(w, http.StatusBadRequest, "BadRequest", "API version not supported")
		return
	}
	if readErr != nil {
		writeAzureError(w, http.StatusBadRequest, "BadRequest", "could not read the request body: "+readErr.Error())
		return
	}
	deployment, op, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, azurePrefix), "/")
	var handle func(http.ResponseWriter, *http.Request, []byte)
	switch op {
	case "chat/completions":
		handle = s.chatCompletions
	case "completions":
		handle = s.completions
	case "embeddings":
		handle = s.embeddings
	}
	if deployment == "" || handle == nil {
		writeAzureError(w, http.StatusNotFound, "404", "Resource not found")
		return
	}
	model := deployment
	if s.opts.Deployments != nil {
		m, ok := s.opts.Deployments[deployment]
		if !ok {
			writeAzureError(w, http.StatusNotFound, "DeploymentNotFound",
				"The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.")
			return
		}
		model = m
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeAzureError(w, http.StatusMethodNotAllowed, "405", "Method not allowed")
		return
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		writeAzureError(w, http.StatusBadRequest, "BadRequest", "The request body is not valid JSON.")
		return
	}
	fields["model"], _ = json.Marshal(model)
	body, _ = json.Marshal(fields)
	handle(w, r, body)
}
