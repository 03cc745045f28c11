// Package apierr is the one place where gateway errors become HTTP statuses
// and error bodies: OpenAI's {"error":{message,type,param,code}} on /v1 and
// Ollama's {"error":"message"} on /api.
package apierr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
)

// Error is an error a consumer sees.
type Error struct {
	// Status is the HTTP status.
	Status int
	// Type is OpenAI's error type: invalid_request_error,
	// authentication_error, not_found_error, rate_limit_error,
	// insufficient_quota, server_error, service_unavailable.
	Type string
	// Code is a short machine-readable code, e.g. "model_not_found".
	Code string
	// Param names the offending request field, when there is one.
	Param string
	// Message is for people; it says what is wrong and, where it helps, what
	// to do.
	Message string
	// RetryAfter, when positive, is sent as the Retry-After header (seconds)
	// so that SDKs that retry wait sensibly.
	RetryAfter int
}

func (e *Error) Error() string { return e.Message }

// Invalid is a 400 about one request field (param may be empty).
func Invalid(param, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "invalid_request", Param: param, Message: fmt.Sprintf(format, args...)}
}

// Unauthorized is a 401.
func Unauthorized(msg string) *Error {
	return &Error{Status: http.StatusUnauthorized, Type: "authentication_error", Code: "invalid_api_key", Message: msg}
}

// ModelNotFound is a 404 for a model no provider has ever offered.
func ModelNotFound(model string) *Error {
	return &Error{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "model_not_found", Param: "model",
		Message: fmt.Sprintf("The model %q does not exist on this network: no provider offers it. GET /v1/models lists the available models.", model)}
}

// NotFound is a 404 for anything else.
func NotFound(format string, args ...any) *Error {
	return &Error{Status: http.StatusNotFound, Type: "not_found_error", Code: "not_found", Message: fmt.Sprintf(format, args...)}
}

// Overloaded is a 429: every provider queue for the model is full.
func Overloaded(format string, args ...any) *Error {
	return &Error{Status: http.StatusTooManyRequests, Type: "rate_limit_error", Code: "providers_busy", Message: fmt.Sprintf(format, args...), RetryAfter: 1}
}

// Unavailable is a 503 with the reason no provider can take the request.
func Unavailable(code, format string, args ...any) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Type: "service_unavailable", Code: code, Message: fmt.Sprintf(format, args...), RetryAfter: 5}
}

// Upstream is a 502: the provider failed while serving.
func Upstream(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadGateway, Type: "server_error", Code: "provider_error", Message: fmt.Sprintf(format, args...)}
}

// Internal is a 500; the message must not leak internals.
func Internal(format string, args ...any) *Error {
	return &Error{Status: http.StatusInternalServerError, Type: "server_error", Code: "internal_error", Message: fmt.Sprintf(format, args...)}
}

// From converts any error into an *Error (500 unless it already is one).
func From(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return Internal("internal error")
}

// OpenAI returns the OpenAI-style body of e.
func (e *Error) OpenAI() apitypes.ErrorBody {
	b := apitypes.ErrorBody{Error: apitypes.ErrorObject{Message: e.Message, Type: e.Type}}
	if e.Param != "" {
		b.Error.Param = &e.Param
	}
	if e.Code != "" {
		b.Error.Code = &e.Code
	}
	return b
}

// WriteOpenAI writes e as an OpenAI error response.
func WriteOpenAI(w http.ResponseWriter, e *Error) {
	writeJSON(w, e.Status, e.OpenAI(), e.RetryAfter)
}

// WriteOllama writes e as an Ollama error response ({"error":"message"}),
// which Ollama clients turn into their StatusError.
func WriteOllama(w http.ResponseWriter, e *Error) {
	writeJSON(w, e.Status, map[string]string{"error": e.Message}, e.RetryAfter)
}

func writeJSON(w http.ResponseWriter, status int, v any, retryAfter int) {
	b, _ := json.Marshal(v)
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
