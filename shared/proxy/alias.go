package proxy

// Model aliases (the "aliases" of LiteLLM's key management API):
// a key may map a model name its clients ask for to the model that serves
// it, so an administrator can upgrade or downgrade a class's model without
// touching the students' code.
//
// Rules:
//   - One level: the requested model's alias is applied once; the target is
//     not looked up again (a -> b, b -> c serves a as b).
//   - The request is allowed when the key's allowedModels (what the key may
//     request, as LiteLLM's "models" is) names the requested model or the
//     alias's target; an empty list allows everything. So
//     {"models": ["my-free-tier"], "aliases": {"gpt-3.5-turbo": "my-free-tier"}}
//     lets clients send gpt-3.5-turbo and be served my-free-tier.
//   - Everything after is about the target: the body sent upstream names it,
//     it is priced, its modelLimits apply, and the event's Model is the
//     target, with the name the client sent in RequestedModel.
//   - GET /v1/models lists the alias names the key may request, too.

import (
	"encoding/json"
	"errors"
	"slices"

	"github.com/stipend/stipend/shared/apikey"
)

// applyAlias serves req as the target of key's alias for req.Model, if it
// has one: req.Model becomes the target and the body's "model" field is
// rewritten. It returns the model the client asked for and the body to use.
func applyAlias(key *apikey.Key, req *request, body []byte) (requested string, out []byte, err error) {
	requested = req.Model
	target, ok := key.Aliases[requested]
	if !ok || target == "" || target == requested {
		return requested, body, nil
	}
	if out, err = setStringField(body, "model", target); err != nil {
		return requested, nil, err
	}
	req.Model = target
	return requested, out, nil
}

// modelAllowed reports whether key may ask for requested, served as served
// (the same model when no alias applied).
func modelAllowed(key *apikey.Key, requested, served string) bool {
	return key.AllowsModel(requested) || (served != requested && key.AllowsModel(served))
}

// requestedIfAliased is requested when an alias changed it to served, else "".
func requestedIfAliased(requested, served string) string {
	if requested == served {
		return ""
	}
	return requested
}

// withAliases returns names plus the alias names key may request that names
// lacks, in alias order (sorted); names itself is not changed.
func withAliases(key *apikey.Key, names []string) []string {
	if len(key.Aliases) == 0 {
		return names
	}
	out := slices.Clone(names)
	for _, alias := range slices.Sorted(mapKeys(key.Aliases)) {
		if !slices.Contains(out, alias) && modelAllowed(key, alias, key.Aliases[alias]) {
			out = append(out, alias)
		}
	}
	return out
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// setStringField returns body with the top-level field name set to the
// string v (setField's string variant).
func setStringField(body []byte, name, v string) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return nil, errors.New("not a JSON object")
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	obj[name] = b
	return json.Marshal(obj)
}
