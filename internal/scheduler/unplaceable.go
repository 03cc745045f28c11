package scheduler

import (
	"fmt"
	"strings"

	"github.com/idlegrid/idlegrid/internal/money"
)

// Unplaceable says why no provider can take a request now. Each provider
// offering the model is counted once, under the first reason in field
// order that excludes it.
type Unplaceable struct {
	Model string
	// Offering is how many connected providers serve the model.
	Offering int
	// NotAllowed serve it with a digest the network does not allow for it.
	NotAllowed int
	// Jailed were convicted by the ledger's verification.
	Jailed int
	// Incapable serve a model without a capability the request needs;
	// Lacking names one they lack.
	Incapable int
	Lacking   string
	// NoLogprobs return no log-probabilities, which the request asks for.
	NoLogprobs int
	// Ignored are named in the request's ignore list.
	Ignored int
	// WrongDigest serve the model with another digest than RequireDigest.
	WrongDigest   int
	RequireDigest string
	// NotListed are missing from the request's order while it disallows
	// fallbacks.
	NotListed int
	// OverPrice charge more than the request's cap for prompt or
	// completion tokens; CheapestPrompt and CheapestCompletion are the
	// lowest prices above each cap (0 when no provider exceeds that cap).
	OverPrice                          int
	MaxPrompt, MaxCompletion           *money.Amount
	CheapestPrompt, CheapestCompletion money.Amount
	// Failing failed this request already or have their circuit breaker
	// open after repeated failures.
	Failing int
	// Paused are paused by their owners; Busy have no free slot (and
	// would otherwise take the request).
	Paused, Busy int
}

func (u *Unplaceable) Error() string {
	head := fmt.Sprintf("model %q: ", u.Model)
	if u.Offering == 0 {
		return head + "0 providers online"
	}
	head += plural(u.Offering, "provider") + " online"
	if u.Paused == u.Offering {
		return head + ", all paused by their owners"
	}
	type reason struct {
		n    int
		text string
	}
	reasons := []reason{
		{u.NotAllowed, "serving weights (digest) the ledger does not allow for this model"},
		{u.Jailed, "jailed by the ledger after failing verification"},
		{u.Incapable, "without the " + u.Lacking + " capability"},
		{u.NoLogprobs, "returning no log-probabilities (their backend does not; the request asks for logprobs)"},
		{u.Ignored, "ignored by provider.ignore"},
		{u.WrongDigest, fmt.Sprintf("serving another digest than require_digest %s", u.RequireDigest)},
		{u.NotListed, "not in provider.order (allow_fallbacks is false)"},
		{u.OverPrice, "above " + u.priceCaps()},
		{u.Failing, "failing"},
		{u.Paused, "paused"},
	}
	var parts []string
	for _, r := range reasons {
		if r.n == 0 {
			continue
		}
		if r.n == u.Offering {
			// One reason for every provider reads better without a count.
			return head + ", all " + r.text
		}
		parts = append(parts, fmt.Sprintf("%d %s", r.n, r.text))
	}
	if u.Busy > 0 {
		// Busy keeps its count even when it is every provider: "1 busy"
		// says how much capacity the request waits for.
		parts = append(parts, fmt.Sprintf("%d busy", u.Busy))
	}
	if len(parts) == 0 {
		return head
	}
	return head + ", " + strings.Join(parts, ", ")
}

// priceCaps describes the caps providers exceeded, with the cheapest price
// above each, e.g. "max_price prompt 0.20/Mtok (cheapest 0.35)".
func (u *Unplaceable) priceCaps() string {
	var caps []string
	if u.MaxPrompt != nil && u.CheapestPrompt > *u.MaxPrompt {
		caps = append(caps, fmt.Sprintf("prompt %s/Mtok (cheapest %s)", FormatPrice(*u.MaxPrompt), FormatPrice(u.CheapestPrompt)))
	}
	if u.MaxCompletion != nil && u.CheapestCompletion > *u.MaxCompletion {
		caps = append(caps, fmt.Sprintf("completion %s/Mtok (cheapest %s)", FormatPrice(*u.MaxCompletion), FormatPrice(u.CheapestCompletion)))
	}
	return "max_price " + strings.Join(caps, ", ")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// OnlyLogprobs reports whether the request's logprobs are all that keeps
// it from every provider the network allows: asking again cannot help,
// asking without logprobs can.
func (u *Unplaceable) OnlyLogprobs() bool {
	return u.NoLogprobs > 0 && u.NoLogprobs+u.NotAllowed+u.Jailed == u.Offering
}

// OnlyIncapable reports whether a missing capability is all that keeps
// the request from every provider the network allows: asking again
// cannot help, asking without it (e.g. without tools) can.
func (u *Unplaceable) OnlyIncapable() bool {
	return u.Incapable > 0 && u.Incapable+u.NotAllowed+u.Jailed == u.Offering
}

// OnlyBusy reports whether capacity will come back by itself: at least one
// provider would take the request but for its full slots, so the request
// may wait in the queue.
func (u *Unplaceable) OnlyBusy() bool { return u.Busy > 0 }

// Excluded is how many providers the request's own preferences (ignore,
// require_digest, order without fallbacks, max_price) ruled out.
func (u *Unplaceable) Excluded() int { return u.Ignored + u.WrongDigest + u.NotListed + u.OverPrice }

// overPrice counts a provider above a cap and remembers the cheapest price
// above each cap.
func (u *Unplaceable) overPrice(prompt, completion money.Amount) {
	u.OverPrice++
	if u.MaxPrompt != nil && prompt > *u.MaxPrompt && (u.CheapestPrompt == 0 || prompt < u.CheapestPrompt) {
		u.CheapestPrompt = prompt
	}
	if u.MaxCompletion != nil && completion > *u.MaxCompletion && (u.CheapestCompletion == 0 || completion < u.CheapestCompletion) {
		u.CheapestCompletion = completion
	}
}
