package verifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/verify"
)

// Judging other verifiers' cases. A case is decided by verifier stake, so
// a verifier also votes in the canary cases others opened: the ledger
// keeps each open canary case's receipts and texts (the prompts are the
// opener's, public), and the verifier replays them on its reference like
// its own canaries. Sample cases need no such step: every verifier of the
// feed judges the same samples and posts under the same evidence hash. A
// case the verifier cannot judge — weights it does not vouch for, a body
// it cannot read, a replay that fails — gets no vote (it abstains).

// OpenCase is a case on the ledger still collecting verdicts; Opening
// holds a canary case's receipts and texts.
type OpenCase struct {
	Evidence receipt.Hash
	Case     ledger.Case
	Opening  *ledger.CaseOpening
}

// caseRecord is the evidence the verifier keeps for a case it judged that
// another verifier opened.
type caseRecord struct {
	Evidence receipt.Hash      `json:"evidence"`
	Case     ledger.Case       `json:"case"`
	Replayed []verify.Replayed `json:"replayed"`
	Verdict  verify.Verdict    `json:"verdict"`
}

func (v *Verifier) runCases(ctx context.Context) {
	t := time.NewTicker(v.cfg.CaseInterval)
	defer t.Stop()
	for {
		if _, err := v.JudgeCases(ctx); err != nil && ctx.Err() == nil {
			v.log.Warn("open cases", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// JudgeCases votes in the open canary cases the verifier has not judged
// (its own included: it voted when it opened them) and returns the
// verdicts it reached.
func (v *Verifier) JudgeCases(ctx context.Context) ([]Posted, error) {
	if v.cfg.Cases == nil || v.cfg.Key.IsZero() {
		return nil, errors.New("verifier: judging open cases needs the ledger's cases and the verifier's key")
	}
	me := v.cfg.Key.Public().Address()
	cases, err := v.cfg.Cases(ctx)
	if err != nil {
		return nil, err
	}
	refs, err := v.cfg.Reference.Models(ctx)
	if err != nil {
		return nil, fmt.Errorf("reference models: %w", err)
	}
	var out []Posted
	for _, oc := range cases {
		c := &oc.Case
		if !c.Canary || oc.Opening == nil || c.Matured || c.Planted || c.Equivocated || c.Provider == me || c.Gateway == me ||
			slices.ContainsFunc(c.Votes, func(x ledger.Vote) bool { return x.Verifier == me }) {
			continue
		}
		v.mu.Lock()
		seen := v.judgedCases[oc.Evidence]
		v.judgedCases[oc.Evidence] = true
		v.mu.Unlock()
		if seen {
			continue
		}
		if p, ok := v.judgeCase(ctx, &oc, refs); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// judgeCase replays an open canary case on the reference, and votes.
func (v *Verifier) judgeCase(ctx context.Context, oc *OpenCase, refs []backend.Model) (Posted, bool) {
	o := oc.Opening
	if len(o.Receipts) == 0 || len(o.Texts) != len(o.Receipts) {
		return Posted{}, false
	}
	i := slices.IndexFunc(refs, func(m backend.Model) bool { return m.Digest == oc.Case.Digest })
	if i < 0 {
		return Posted{}, false // weights this verifier does not vouch for
	}
	model := refs[i].Name
	var provider receipt.Receipt
	replays := make([]verify.Replayed, 0, len(o.Receipts))
	for k, br := range o.Receipts {
		r, err := receipt.Decode(br.Bytes)
		if err != nil {
			return Posted{}, false
		}
		provider = r
		req, err := canaryRequest(o.Texts[k].Request, model)
		if err != nil {
			v.log.Warn("cannot read a canary of an open case; abstaining", "evidence", oc.Evidence.String(), "err", err)
			return Posted{}, false
		}
		// Only what the provider signed counts: the token counts, and the
		// finish they imply (the limit reached, or a stop).
		finish := "stop"
		if req.Options.MaxTokens > 0 && r.CompletionTokens >= uint64(req.Options.MaxTokens) {
			finish = "length"
		}
		resp := verify.Response{Text: o.Texts[k].Response, FinishReason: finish,
			Usage: protocol.Usage{PromptTokens: r.PromptTokens, CompletionTokens: r.CompletionTokens}}
		rp, err := v.replay(ctx, v.cfg.Canary, v.cfg.Reference, req, resp, true)
		if err != nil {
			v.log.Warn("cannot replay a canary of an open case; abstaining", "evidence", oc.Evidence.String(), "err", err)
			return Posted{}, false
		}
		replays = append(replays, rp)
	}
	verdict := v.cfg.Canary.Decide(replays)
	raw, _ := json.MarshalIndent(caseRecord{Evidence: oc.Evidence, Case: oc.Case, Replayed: replays, Verdict: verdict}, "", " ")
	return v.record(ctx, Posted{Source: "case", Provider: provider.Provider, Model: model, Digest: oc.Case.Digest,
		Evidence: oc.Evidence, Verdict: verdict, Responses: len(replays)}, raw, opening{}), true
}

// canaryRequest reads the OpenAI request body a verifier sent for a
// canary (chat or completions) back into the request the reference
// replays, under the reference's name for the model.
func canaryRequest(body []byte, model string) (protocol.Request, error) {
	var b struct {
		MaxTokens   int                    `json:"max_tokens"`
		Temperature *float64               `json:"temperature"`
		Prompt      *string                `json:"prompt"`
		Messages    []protocol.ChatMessage `json:"messages"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return protocol.Request{}, err
	}
	req := protocol.Request{Model: model, Options: protocol.Options{MaxTokens: b.MaxTokens, Temperature: b.Temperature}}
	switch {
	case b.Prompt != nil && b.Messages == nil:
		req.Kind, req.Prompt = protocol.KindGenerate, *b.Prompt
	case b.Prompt == nil && len(b.Messages) > 0:
		req.Kind, req.Messages = protocol.KindChat, b.Messages
	default:
		return protocol.Request{}, errors.New("a canary body has a prompt or messages")
	}
	return req, nil
}
