package ddb

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/stipend/stipend/shared/awsjson"
)

// CallError is an error answer, or no answer, to a call: Unwrap gives the
// answer's typed error (*ConditionalCheckFailedException, ...,
// *APIError) or, with no answer, the transport's.
type CallError struct {
	Operation string
	Status    int // 0 when no response arrived
	Attempts  int
	Err       error
}

func (e *CallError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("dynamodb %s (%d attempts): %v", e.Operation, e.Attempts, e.Err)
	}
	return fmt.Sprintf("dynamodb %s: status %d: %v", e.Operation, e.Status, e.Err)
}

func (e *CallError) Unwrap() error { return e.Err }

// APIError is an error answer of a kind without its own type here.
type APIError struct {
	Code    string // "ValidationException"; "HTTP <status>" when the answer named none
	Message string
	// Modelled: DynamoDB's API declares Code as a client error of the
	// request itself (ProvisionedThroughputExceededException,
	// ItemCollectionSizeLimitExceededException, ...), as opposed to a
	// server error or a code it does not declare (ValidationException is
	// one: the SDK reports it as a generic error of unknown fault).
	Modelled bool
}

func (e *APIError) Error() string {
	return "api error " + e.Code + ": " + e.Message
}

// ErrorCode is the error's name.
func (e *APIError) ErrorCode() string { return e.Code }

// ErrorMessage is DynamoDB's message.
func (e *APIError) ErrorMessage() string { return e.Message }

// ClientFault reports a modelled error of the request itself.
func (e *APIError) ClientFault() bool { return e.Modelled }

// ConditionalCheckFailedException: a write's condition was false. Item
// is the item as it was, when the write asked for it
// (ReturnValuesOnConditionCheckFailure ALL_OLD).
type ConditionalCheckFailedException struct {
	Message *string
	Item    map[string]AttributeValue
}

func (e *ConditionalCheckFailedException) Error() string {
	return "ConditionalCheckFailedException: " + deref(e.Message)
}

// ErrorCode is the error's name.
func (e *ConditionalCheckFailedException) ErrorCode() string {
	return "ConditionalCheckFailedException"
}

// ErrorMessage is DynamoDB's message.
func (e *ConditionalCheckFailedException) ErrorMessage() string { return deref(e.Message) }

// ClientFault: a client error.
func (e *ConditionalCheckFailedException) ClientFault() bool { return true }

// CancellationReason is why a transaction's action was not applied: Code
// is "None" for an action that did not cause the cancellation, else
// "ConditionalCheckFailed", "TransactionConflict", "ValidationError", ...
type CancellationReason struct {
	Code    *string
	Message *string
	Item    map[string]AttributeValue
}

// TransactionCanceledException: a transaction was not applied; its
// reasons are in the order of its actions.
type TransactionCanceledException struct {
	Message             *string
	CancellationReasons []CancellationReason
}

func (e *TransactionCanceledException) Error() string {
	return "TransactionCanceledException: " + deref(e.Message)
}

// ErrorCode is the error's name.
func (e *TransactionCanceledException) ErrorCode() string { return "TransactionCanceledException" }

// ErrorMessage is DynamoDB's message.
func (e *TransactionCanceledException) ErrorMessage() string { return deref(e.Message) }

// ClientFault: a client error.
func (e *TransactionCanceledException) ClientFault() bool { return true }

// ResourceInUseException: the table exists already, or is being changed.
type ResourceInUseException struct{ Message *string }

func (e *ResourceInUseException) Error() string {
	return "ResourceInUseException: " + deref(e.Message)
}

// ErrorCode is the error's name.
func (e *ResourceInUseException) ErrorCode() string { return "ResourceInUseException" }

// ErrorMessage is DynamoDB's message.
func (e *ResourceInUseException) ErrorMessage() string { return deref(e.Message) }

// ClientFault: a client error.
func (e *ResourceInUseException) ClientFault() bool { return true }

// ResourceNotFoundException: no such table (or index).
type ResourceNotFoundException struct{ Message *string }

func (e *ResourceNotFoundException) Error() string {
	return "ResourceNotFoundException: " + deref(e.Message)
}

// ErrorCode is the error's name.
func (e *ResourceNotFoundException) ErrorCode() string { return "ResourceNotFoundException" }

// ErrorMessage is DynamoDB's message.
func (e *ResourceNotFoundException) ErrorMessage() string { return deref(e.Message) }

// ClientFault: a client error.
func (e *ResourceNotFoundException) ClientFault() bool { return true }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// jsonError is what an error answer's body holds beyond its code and
// message.
type jsonError struct {
	Item                scannedItem `json:"Item"`
	CancellationReasons []struct {
		Code    *string     `json:"Code"`
		Message *string     `json:"Message"`
		Item    scannedItem `json:"Item"`
	} `json:"CancellationReasons"`
}

// decodeError turns an error answer into its typed error: the four types
// above, or an *APIError.
func decodeError(ae *awsjson.Error) error {
	var e jsonError
	_ = json.Unmarshal(ae.Body, &e) // an undecodable body leaves the status to speak
	code, msg := ae.Code, ae.Message
	var m *string
	if msg != "" {
		m = &msg
	}
	switch code {
	case "ConditionalCheckFailedException":
		return &ConditionalCheckFailedException{Message: m, Item: e.Item}
	case "TransactionCanceledException":
		tc := &TransactionCanceledException{Message: m}
		for _, r := range e.CancellationReasons {
			tc.CancellationReasons = append(tc.CancellationReasons, CancellationReason{Code: r.Code, Message: r.Message, Item: r.Item})
		}
		return tc
	case "ResourceNotFoundException":
		return &ResourceNotFoundException{Message: m}
	case "ResourceInUseException":
		return &ResourceInUseException{Message: m}
	case "":
		code = "HTTP " + strconv.Itoa(ae.Status)
	}
	return &APIError{Code: code, Message: msg, Modelled: modelledClientError(code)}
}

// modelledClientError reports the codes DynamoDB's API declares as client
// errors of the operations stipend calls (the SDK gives each a type whose
// fault is the client's); InternalServerError is the server's.
func modelledClientError(code string) bool {
	switch code {
	case "ProvisionedThroughputExceededException", "RequestLimitExceeded", "ThrottlingException",
		"ItemCollectionSizeLimitExceededException", "TransactionConflictException",
		"TransactionInProgressException", "IdempotentParameterMismatchException",
		"LimitExceededException", "InvalidEndpointException", "ReplicatedWriteConflictException",
		"ResourceInUseException", "ResourceNotFoundException":
		return true
	}
	return false
}
