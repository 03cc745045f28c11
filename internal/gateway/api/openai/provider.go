package openai

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/idlegrid/idlegrid/internal/gateway/api/jsonfield"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/scheduler"
)

// maxProviderList bounds provider.order and provider.ignore.
const maxProviderList = 64

// providerMembers are the members of "provider" the network understands.
// Others (OpenRouter's only, quantizations, data_collection, …) are refused
// rather than ignored: a routing constraint the gateway silently dropped
// would send the request somewhere its sender ruled out.
var providerMembers = map[string]func(raw json.RawMessage, p *scheduler.Preferences) *apierr.Error{
	"order": func(raw json.RawMessage, p *scheduler.Preferences) (e *apierr.Error) {
		p.Order, e = parseProviderList(raw, "provider.order")
		return
	},
	"ignore": func(raw json.RawMessage, p *scheduler.Preferences) (e *apierr.Error) {
		p.Ignore, e = parseProviderList(raw, "provider.ignore")
		return
	},
	"allow_fallbacks": parseAllowFallbacks,
	"max_price":       parseMaxPrice,
	"sort":            parseSort,
	"require_digest":  parseRequireDigest,
}

// parseProvider reads the optional "provider" object: the request's
// routing preferences, in the spirit of OpenRouter's, and the object.
func parseProvider(o jsonfield.Object) (scheduler.Preferences, jsonfield.Object, *apierr.Error) {
	raw, ok := o.Get("provider")
	if !ok {
		return scheduler.Preferences{}, nil, nil
	}
	po, e := jsonfield.AsObject(raw, "provider")
	if e != nil {
		return scheduler.Preferences{}, nil, e
	}
	p, e := parseProviderObject(po)
	return p, po, e
}

// ParseDefaults checks text, an API key's default routing preferences, by
// the rules of a request's "provider" object, and returns the object.
func ParseDefaults(text string) (jsonfield.Object, *apierr.Error) {
	po, e := jsonfield.AsObject(json.RawMessage(strings.TrimSpace(text)), "provider")
	if e != nil {
		return nil, e
	}
	if _, e := parseProviderObject(po); e != nil {
		return nil, e
	}
	return po, nil
}

// WithDefaults is the routing preferences of a request whose own
// "provider" members (request, nil for none) are laid over an API key's
// defaults: each member the request names, null included, replaces the
// key's member of that name as a whole; the key's other members stay.
func WithDefaults(defaults, request jsonfield.Object) (scheduler.Preferences, *apierr.Error) {
	merged := make(jsonfield.Object, len(defaults)+len(request))
	maps.Copy(merged, defaults)
	maps.Copy(merged, request)
	return parseProviderObject(merged)
}

func parseProviderObject(po jsonfield.Object) (scheduler.Preferences, *apierr.Error) {
	var p scheduler.Preferences
	names := make([]string, 0, len(po))
	for name := range po {
		names = append(names, name)
	}
	sort.Strings(names) // errors must not depend on map order
	for _, name := range names {
		parse, known := providerMembers[name]
		if !known {
			return p, jsonfield.Invalid(jsonfield.CodeUnsupportedValue, "provider."+name,
				"provider.%s is not supported on this network: provider accepts %s", name, supportedProviderMembers())
		}
		member, ok := po.Get(name)
		if !ok {
			continue // null: the default
		}
		if e := parse(member, &p); e != nil {
			return p, e
		}
	}
	return p, nil
}

func supportedProviderMembers() string {
	names := make([]string, 0, len(providerMembers))
	for name := range providerMembers {
		names = append(names, name)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func parseProviderList(raw json.RawMessage, param string) ([]scheduler.ProviderRef, *apierr.Error) {
	items, e := jsonfield.AsArray(raw, param)
	if e != nil {
		return nil, e
	}
	if len(items) > maxProviderList {
		return nil, jsonfield.Invalid(jsonfield.CodeInvalidValue, param, "invalid value for '%s': at most %d providers, got %d", param, maxProviderList, len(items))
	}
	refs := make([]scheduler.ProviderRef, 0, len(items))
	for i, item := range items {
		ip := fmt.Sprintf("%s[%d]", param, i)
		s, e := jsonfield.AsString(item, ip)
		if e != nil {
			return nil, e
		}
		r, err := scheduler.ParseProviderRef(s)
		if err != nil {
			return nil, jsonfield.Invalid(jsonfield.CodeInvalidValue, ip, "invalid value for '%s': %v", ip, err)
		}
		refs = append(refs, r)
	}
	return refs, nil
}

func parseAllowFallbacks(raw json.RawMessage, p *scheduler.Preferences) *apierr.Error {
	allow, e := jsonfield.AsBool(raw, "provider.allow_fallbacks")
	p.NoFallbacks = !allow
	return e
}

func parseSort(raw json.RawMessage, p *scheduler.Preferences) *apierr.Error {
	s, e := jsonfield.AsString(raw, "provider.sort")
	if e != nil {
		return e
	}
	if p.Sort, e = sortValue(s); e != nil {
		return e
	}
	return nil
}

func sortValue(s string) (scheduler.Sort, *apierr.Error) {
	v, err := scheduler.ParseSort(s)
	if err != nil || v == scheduler.SortDefault {
		return "", jsonfield.Invalid(jsonfield.CodeInvalidValue, "provider.sort", "invalid value for 'provider.sort': %q is not one of price, throughput, latency", s)
	}
	return v, nil
}

func parseRequireDigest(raw json.RawMessage, p *scheduler.Preferences) *apierr.Error {
	s, e := jsonfield.AsString(raw, "provider.require_digest")
	if e != nil {
		return e
	}
	d, err := scheduler.ParseDigest(s)
	if err != nil {
		return jsonfield.Invalid(jsonfield.CodeInvalidValue, "provider.require_digest", "invalid value for 'provider.require_digest': %v", err)
	}
	p.RequireDigest = d
	return nil
}

// parseMaxPrice reads max_price {prompt, completion}: prices in tokens per
// million tokens, as numbers or decimal strings.
func parseMaxPrice(raw json.RawMessage, p *scheduler.Preferences) *apierr.Error {
	mo, e := jsonfield.AsObject(raw, "provider.max_price")
	if e != nil {
		return e
	}
	names := make([]string, 0, len(mo))
	for name := range mo {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		param := "provider.max_price." + name
		var dst **money.Amount
		switch name {
		case "prompt":
			dst = &p.MaxPrompt
		case "completion":
			dst = &p.MaxCompletion
		default:
			// OpenRouter also caps per request and per image; neither is
			// priced on this network.
			return jsonfield.Invalid(jsonfield.CodeUnsupportedValue, param, "%s is not supported on this network: max_price accepts prompt and completion (tokens per million tokens)", param)
		}
		v, ok := mo.Get(name)
		if !ok {
			continue
		}
		a, e := parsePrice(v, param)
		if e != nil {
			return e
		}
		*dst = &a
	}
	return nil
}

// parsePrice reads a price in tokens as a JSON number or a decimal string,
// exactly: 0.2 is 200000 base units, never 199999.99….
func parsePrice(raw json.RawMessage, param string) (money.Amount, *apierr.Error) {
	text := string(raw)
	switch jsonfield.KindOf(raw) {
	case "a number":
	case "a string":
		s, e := jsonfield.AsString(raw, param)
		if e != nil {
			return 0, e
		}
		text = strings.TrimSpace(s)
	default:
		return 0, jsonfield.TypeError(param, "a number", raw)
	}
	a, problem := decimalAmount(text)
	if problem != "" {
		return 0, jsonfield.Invalid(jsonfield.CodeInvalidValue, param, "invalid value for '%s': %s %s", param, truncateRaw(raw), problem)
	}
	return a, nil
}

// decimalAmount converts a decimal number ("0.2", "15", "2.5e-1") in tokens
// to base units without going through a float; problem says why it cannot.
func decimalAmount(text string) (money.Amount, string) {
	const notDecimal = "is not a decimal number"
	mant, exp, hasExp := strings.Cut(strings.ToLower(text), "e")
	if strings.HasPrefix(mant, "-") {
		return 0, "is negative"
	}
	whole, frac, hasDot := strings.Cut(mant, ".")
	if whole == "" || hasDot && frac == "" || !allDigits(whole) || !allDigits(frac) {
		return 0, notDecimal
	}
	digits := strings.TrimLeft(whole+frac, "0")
	if digits == "" {
		return 0, ""
	}
	e := 0
	if hasExp {
		sign := 1
		switch {
		case strings.HasPrefix(exp, "-"):
			sign, exp = -1, exp[1:]
		case strings.HasPrefix(exp, "+"):
			exp = exp[1:]
		}
		if exp == "" || !allDigits(exp) {
			return 0, notDecimal
		}
		if len(exp) > 3 {
			return 0, "is out of range"
		}
		e = sign * atoiSmall(exp)
	}
	// value = digits × 10^shift base units, with 6 decimals per token.
	shift := e - len(frac) + 6
	if shift < 0 {
		if len(digits) <= -shift || strings.Trim(digits[len(digits)+shift:], "0") != "" {
			return 0, "has more than 6 decimals (the smallest price step is 0.000001 token per million tokens)"
		}
		digits = digits[:len(digits)+shift]
	} else {
		if len(digits)+shift > 20 {
			return 0, "is too large"
		}
		digits += strings.Repeat("0", shift)
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || n == math.MaxUint64 {
		return 0, "is too large"
	}
	return money.Amount(n), ""
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// atoiSmall converts up to three digits.
func atoiSmall(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

func truncateRaw(raw json.RawMessage) string {
	if len(raw) > 40 {
		return string(raw[:40]) + "…"
	}
	return string(raw)
}
