package tokenizer

// A shortcut for the common case of counting a chat request: its members
// found in place (jsonscan) instead of decoded through reflection. A
// request it cannot take exactly is decoded by json.Unmarshal as before.

import (
	"encoding/json"

	"github.com/stipend/stipend/shared/jsonscan"
)

// plainChat fills req from body as json.Unmarshal does, when body is
// valid JSON whose top-level and message member names are lower-case ASCII
// (json.Unmarshal would match other spellings too), none of the fields
// chatRequest knows is repeated, and every message is an object whose
// role, name, refusal and tool_call_id are strings or null and that has no
// tool_calls or function_call. Otherwise it reports false, and req may be
// half filled: the caller decodes into a fresh one.
func plainChat(body []byte, req *chatRequest) bool {
	if !json.Valid(body) {
		return false
	}
	var seen uint
	return jsonscan.Object(body, func(name, v []byte) bool {
		if !jsonscan.LowerName(name) {
			return false
		}
		var bit uint
		switch string(name) {
		case "messages":
			bit = 1
			if !plainMessages(v, req) {
				return false
			}
		case "tools":
			bit, req.Tools = 2, v
		case "functions":
			bit, req.Functions = 4, v
		case "tool_choice":
			bit, req.ToolChoice = 8, v
		case "function_call":
			bit, req.FunctionCall = 16, v
		case "response_format":
			bit, req.ResponseFormat = 32, v
		default:
			return true
		}
		if seen&bit != 0 {
			return false // repeated: json.Unmarshal's rules
		}
		seen |= bit
		return true
	})
}

// plainMessages fills req.Messages from v, a messages array or null.
func plainMessages(v []byte, req *chatRequest) bool {
	if string(v) == "null" {
		return true
	}
	if len(v) == 0 || v[0] != '[' {
		return false
	}
	req.Messages = make([]chatMessage, 0, 4)
	return jsonscan.Array(v, func(e []byte) bool {
		var m chatMessage
		if !plainMessage(e, &m) {
			return false
		}
		req.Messages = append(req.Messages, m)
		return true
	})
}

// plainMessage fills m from e, a message object.
func plainMessage(e []byte, m *chatMessage) bool {
	if len(e) == 0 || e[0] != '{' {
		return false
	}
	var seen uint
	return jsonscan.Object(e, func(name, v []byte) bool {
		if !jsonscan.LowerName(name) {
			return false
		}
		var bit uint
		var field *string
		switch string(name) {
		case "role":
			bit, field = 1, &m.Role
		case "name":
			bit, field = 2, &m.Name
		case "refusal":
			bit, field = 4, &m.Refusal
		case "tool_call_id":
			bit, field = 8, &m.ToolCallID
		case "content":
			bit, m.Content = 16, v
		case "tool_calls", "function_call":
			return false
		default:
			return true
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		if field == nil {
			return true
		}
		switch {
		case string(v) == "null":
			return true // json.Unmarshal leaves the string as it is
		case len(v) > 0 && v[0] == '"':
			s, err := jsonString(v)
			*field = s
			return err == nil
		}
		return false // not a string: json.Unmarshal's error
	})
}
