package web

import (
	"context"
	"errors"

	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
)

// API is what the pages show of the gateway's consumer API: the model
// list of GET /v1/models and an account of GET /v1/account.
// *gateway.Gateway answers in-process and *client.Client over HTTP; a
// refused key is an error in which errors.As finds an *apierr.Error (the
// status and message the API answers).
type API interface {
	Models(ctx context.Context) ([]apitypes.Model, error)
	AccountFor(ctx context.Context, apiKey string) (apitypes.Account, error)
}

var errNoAPI = errors.New("the gateway API is not connected to the UI")

// consumerAPI is the API set by SetAPI, or errNoAPI until then.
func (u *UI) consumerAPI() (API, error) {
	a := u.api.Load()
	if a == nil {
		return nil, errNoAPI
	}
	return *a, nil
}

func (u *UI) models(ctx context.Context) ([]apitypes.Model, error) {
	a, err := u.consumerAPI()
	if err != nil {
		return nil, err
	}
	return a.Models(ctx)
}
