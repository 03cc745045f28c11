package web

import (
	"encoding/hex"
	"fmt"
	"html/template"
	"strconv"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
)

// funcs are the templates' formatting helpers. They return plain strings;
// html/template escapes them for the context they land in.
var funcs = template.FuncMap{
	"short":  short,
	"amount": func(a money.Amount) string { return a.String() },
	"time":   func(t time.Time) string { return fmtTime(t) },
	"unixms": func(ms int64) string { return fmtTime(time.UnixMilli(ms)) },
	"hex":    func(b []byte) string { return hex.EncodeToString(b) },
	"milli":  func(v uint64) string { return strconv.FormatFloat(float64(v)/10, 'f', 1, 64) + "%" },
	"rate":   func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
	"addr":   func(k keys.PublicKey) string { return string(k.Address()) },
	"prefix": func() string { return Prefix },
	"prev":   func(h int64) int64 { return h - 1 },
	"next":   func(h int64) int64 { return h + 1 },
	"roles":  roles,
}

// roles names the roles an account holds ("provider, verifier").
func roles(r ledger.Role) string {
	var names []string
	for _, one := range []ledger.Role{ledger.RoleProvider, ledger.RoleGateway, ledger.RoleVerifier} {
		if r&one != 0 {
			names = append(names, one.String())
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// short abbreviates a long identifier for tables; the full value goes in
// the element's title.
func short(s fmt.Stringer) string {
	v := s.String()
	if len(v) <= 16 {
		return v
	}
	return v[:8] + "…" + v[len(v)-6:]
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}
