package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/store"
)

// Authentication: the first stage of every consumer request. admit reads
// the body within its limit and finds the API key it is billed to (or the
// keyless account, keyless.go); nothing else runs before it.

// admit authenticates the consumer and reads the size-limited body; on
// failure it has answered in format and returns ok = false.
func (g *Gateway) admit(w http.ResponseWriter, r *http.Request, format errorFormat) (key store.APIKey, body []byte, ok bool) {
	key, e := g.authenticate(r)
	if e == nil {
		body, e = g.readBody(w, r)
	}
	if e != nil {
		format(w, e)
		return store.APIKey{}, nil, false
	}
	return key, body, true
}

// errorFormat writes an error in one API's shape (apierr.WriteOpenAI or
// apierr.WriteOllama).
type errorFormat func(http.ResponseWriter, *apierr.Error)

// authenticate maps the bearer token to an API key record.
func (g *Gateway) authenticate(r *http.Request) (store.APIKey, *apierr.Error) {
	h := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	token = strings.TrimSpace(token)
	if !ok || token == "" {
		if k, ok := g.keyless(r); ok {
			return k, nil
		}
		return store.APIKey{}, missingKey()
	}
	return g.lookupKey(r.Context(), token)
}

// missingKey refuses a request without an API key.
func missingKey() *apierr.Error {
	return apierr.Unauthorized("Missing API key: send it as 'Authorization: Bearer <key>'. `idlegrid keys create` makes one.")
}

// lookupKey maps an API key to its record.
func (g *Gateway) lookupKey(ctx context.Context, token string) (store.APIKey, *apierr.Error) {
	k, err := g.cfg.Store.LookupAPIKey(ctx, token)
	switch {
	case err == nil:
		return k, nil
	case errors.Is(err, store.ErrRevoked):
		return store.APIKey{}, apierr.Unauthorized("This API key has been revoked.")
	case errors.Is(err, store.ErrNotFound):
		return store.APIKey{}, apierr.Unauthorized("Incorrect API key provided.")
	default:
		g.log.Error("API key lookup failed", "err", err)
		return store.APIKey{}, apierr.Internal("could not check the API key; try again")
	}
}

// readBody reads a size-limited request body.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apierr.Error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.cfg.MaxBodyBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		e := apierr.Invalid("", "Request body exceeds the %d MiB limit.", g.cfg.MaxBodyBytes>>20)
		e.Code = "request_too_large"
		return nil, e
	case err != nil:
		return nil, apierr.Invalid("", "Could not read the request body: %v", err)
	}
	return body, nil
}
