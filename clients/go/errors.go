package kyu

// kyu answers every refusal as {"error": {"code", "message", "field"?}}; Error carries that
// answer (and its HTTP status) to Go callers, so they can branch on Code with errors.As.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Error is a request kyu refused: its stable Code (invalid_payload, not_found,
// lease_lost, …), the Field it names if any (payload.url), and the HTTP Status.
type Error struct {
	Status     int
	Code       string
	Message    string
	Field      string
	RetryAfter time.Duration // from a Retry-After header (503 store_unavailable), else 0
}

func (e *Error) Error() string {
	s := fmt.Sprintf("kyu: %d %s", e.Status, e.Code)
	if e.Field != "" {
		s += " (" + e.Field + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// errorFrom builds an *Error from a non-2xx answer; a body that is not kyu's error shape
// still gives an *Error, with code "unexpected_response" and the body as message.
func errorFrom(resp *http.Response, body []byte) *Error {
	e := &Error{Status: resp.StatusCode}
	var shape struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Field   string `json:"field"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &shape) == nil && shape.Error != nil {
		e.Code, e.Message, e.Field = shape.Error.Code, shape.Error.Message, shape.Error.Field
	} else {
		e.Code = "unexpected_response"
		e.Message = truncate(string(body), 200)
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
