package web

import (
	"errors"
	"net/http"
	"strings"

	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
)

// maxFormBytes bounds the account form's body: it holds one API key.
const maxFormBytes = 4 << 10

type accountData struct {
	View     *apitypes.Account
	Requests []requestRow
	Error    string
}

// accountForm asks for an API key. The key is posted, never put in a URL,
// so it stays out of histories, logs and Referer headers.
func (u *UI) accountForm(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	u.render(w, http.StatusOK, "account.html", &page{Title: "Account", Nav: "account", Data: accountData{}})
}

// account shows what GET /v1/account shows for the posted key, and the
// account's requests among the gateway's recent ones.
func (u *UI) account(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		u.badRequest(w, "The form could not be read.")
		return
	}
	key := strings.TrimSpace(r.PostForm.Get("key"))
	p := &page{Title: "Account", Nav: "account"}
	d := accountData{}
	status := http.StatusOK
	if key == "" {
		d.Error, status = "Enter an API key.", http.StatusBadRequest
		p.Data = d
		u.render(w, status, "account.html", p)
		return
	}
	ctx, cancel := u.ctx(r)
	defer cancel()
	a, err := u.consumerAPI()
	var v apitypes.Account
	if err == nil {
		v, err = a.AccountFor(ctx, key)
	}
	var ae *apierr.Error
	switch {
	case errors.As(err, &ae):
		d.Error, status = ae.Message, ae.Status
	case err != nil:
		// Never log the key; the error does not contain it.
		u.log.Error("web: account", "err", err)
		d.Error, status = "The account could not be read right now; please retry.", http.StatusBadGateway
	default:
		d.View = &v
		recent, err := u.cfg.Receipts.RecentReceipts(ctx, accountScan)
		if err != nil {
			p.note("Recent requests are unavailable: the store could not be read.")
		}
		for _, s := range recent {
			if s.Receipt.Consumer == v.Account && len(d.Requests) < recentShown {
				d.Requests = append(d.Requests, newRequestRow(s))
			}
		}
	}
	p.Data = d
	u.render(w, status, "account.html", p)
}

// accountScan is how many of the gateway's latest receipts are searched for
// the account's recent requests.
const accountScan = 500
