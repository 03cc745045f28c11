package gateway

import (
	"github.com/idlegrid/idlegrid/internal/gateway/api/jsonfield"
	"github.com/idlegrid/idlegrid/internal/gateway/api/openai"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/scheduler"
	"github.com/idlegrid/idlegrid/internal/store"
)

// keyPreferences are the routing preferences of a request by key: the
// request's own (parsed, and its "provider" object as sent, nil for none)
// laid over the key's defaults member by member. A key without defaults
// leaves the request's as they are. The defaults were checked when they
// were stored; a stored value that no longer parses is the gateway's
// fault, not the consumer's, and is reported as such.
func keyPreferences(key store.APIKey, parsed scheduler.Preferences, request jsonfield.Object) (scheduler.Preferences, *apierr.Error) {
	if key.Preferences == "" {
		return parsed, nil
	}
	defaults, e := openai.ParseDefaults(key.Preferences)
	if e != nil {
		return parsed, apierr.Internal("The API key's default routing preferences are invalid (%s); fix them with `idlegrid keys prefs`.", e.Message)
	}
	return openai.WithDefaults(defaults, request)
}
