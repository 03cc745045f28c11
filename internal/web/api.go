package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
)

var errNoAPI = errors.New("the gateway API is not connected to the UI")

// callAPI runs one request through the gateway's API handler in-process
// and decodes its JSON answer into v. A non-200 answer is an *apiError
// carrying the API's own message. The bearer token, when given, travels
// only in the in-process request's header.
func (u *UI) callAPI(ctx context.Context, path, bearer string, v any) error {
	hp := u.api.Load()
	if hp == nil {
		return errNoAPI
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	req.RemoteAddr = "in-process"
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	(*hp).ServeHTTP(rec, req)
	if rec.status != http.StatusOK {
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		msg := http.StatusText(rec.status)
		if json.Unmarshal(rec.body.Bytes(), &e) == nil && e.Error.Message != "" {
			msg = e.Error.Message
		}
		return &apiError{Status: rec.status, Message: msg}
	}
	if err := json.Unmarshal(rec.body.Bytes(), v); err != nil {
		return fmt.Errorf("GET %s: decode answer: %w", path, err)
	}
	return nil
}

// apiError is an API answer other than 200.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d: %s", e.Status, e.Message) }

// recorder collects an in-process response; answers are small JSON
// documents.
type recorder struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if !r.wrote {
		r.status, r.wrote = status, true
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.body.Write(b)
}

// apiModel is one entry of GET /v1/models.
type apiModel struct {
	ID           string `json:"id"`
	Providers    int    `json:"providers"`
	PricePerMTok *struct {
		Prompt     priceRange `json:"prompt"`
		Completion priceRange `json:"completion"`
	} `json:"price_per_mtok"`
	TokensPerSecond float64 `json:"tokens_per_second"`
}

type priceRange struct {
	Min    string `json:"min"`
	Median string `json:"median"`
}

func (u *UI) models(ctx context.Context) ([]apiModel, error) {
	var list struct {
		Data []apiModel `json:"data"`
	}
	err := u.callAPI(ctx, "/v1/models", "", &list)
	return list.Data, err
}

// accountView is the answer of GET /v1/account.
type accountView struct {
	Account   keys.Address  `json:"account"`
	Ledger    bool          `json:"ledger"`
	Balance   *money.Amount `json:"balance"`
	Deposit   *money.Amount `json:"deposit"`
	Unlocking *money.Amount `json:"unlocking"`
	Spendable *money.Amount `json:"spendable"`
	Reserved  money.Amount  `json:"reserved"`
	Pending   money.Amount  `json:"pending_settlement"`
	Settled   money.Amount  `json:"settled_spend"`
	Receipts  struct {
		Settled  int64 `json:"settled"`
		Pending  int64 `json:"pending"`
		Rejected int64 `json:"rejected"`
	} `json:"receipts"`
}
