package ledger

import (
	"encoding/binary"
	"fmt"

	"github.com/idlegrid/idlegrid/internal/keys"
)

// ParamsVersion is how many parameter changes the chain has made: the
// version a new change's approvals must sign.
func (v View) ParamsVersion() (uint64, error) {
	raw, err := v.R.Get([]byte(keyParamsVer))
	if err != nil {
		return 0, err
	}
	return decodeVersion(raw)
}

func decodeVersion(raw []byte) (uint64, error) {
	switch len(raw) {
	case 0:
		return 0, nil
	case 8:
		return binary.BigEndian.Uint64(raw), nil
	}
	return 0, fmt.Errorf("ledger: params version record of %d bytes", len(raw))
}

// QuorumMet reports whether approvals counts more than two thirds of n
// validators.
func QuorumMet(approvals, n int) bool { return n > 0 && 3*approvals > 2*n }

// changeParams replaces the chain's parameters when more than two thirds of
// the genesis validators' accounts signed the new ones for the current
// version. The supply cap cannot change, and the new reward shares must
// still leave half of all supply to node rewards. The new parameters apply
// from the next block.
func (x *txn) changeParams() (Result, error) {
	t := x.tx
	vals, err := x.validators()
	if err != nil {
		return Result{}, err
	}
	if len(vals) == 0 {
		return fail(CodeInvalid, "params: this chain has no validators declared in its genesis to approve changes"), nil
	}
	raw, err := x.get(keyParamsVer)
	if err != nil {
		return Result{}, err
	}
	version, err := decodeVersion(raw)
	if err != nil {
		return Result{}, err
	}
	msg := ParamsMessage(x.chainID, version, &t.Params)
	isValidator := map[keys.Address]bool{}
	for _, v := range vals {
		isValidator[v.Account] = true
	}
	approved := map[keys.Address]bool{}
	for _, a := range t.Approvals {
		addr := a.Key.Address()
		if !isValidator[addr] {
			return fail(CodeInvalid, fmt.Sprintf("params: approval by %s, which is no validator's account", addr)), nil
		}
		if !a.Key.Verify(msg, a.Signature) {
			return fail(CodeBadSignature, fmt.Sprintf("params: approval by %s does not verify for version %d of these parameters", addr, version)), nil
		}
		approved[addr] = true
	}
	if !QuorumMet(len(approved), len(isValidator)) {
		return fail(CodeInvalid, fmt.Sprintf("params: approved by %d of %d validator accounts; more than two thirds must approve", len(approved), len(isValidator))), nil
	}
	if err := t.Params.Validate(); err != nil {
		return fail(CodeInvalid, err.Error()), nil
	}
	if t.Params.SupplyCap != x.params.SupplyCap {
		return fail(CodeInvalid, fmt.Sprintf("params: the supply cap %d cannot change", x.params.SupplyCap)), nil
	}
	supply, err := x.supply()
	if err != nil {
		return Result{}, err
	}
	if !t.Params.ReservesHalf(supply) {
		return fail(CodeInvalid, fmt.Sprintf("params: provider and verifier shares of %d bps would leave less than half of all supply to node rewards", t.Params.ProviderRewardBps+t.Params.VerifierRewardBps)), nil
	}
	x.set(keyParams, t.Params.encode())
	x.set(keyParamsVer, binary.BigEndian.AppendUint64(nil, version+1))
	return ok(Event{Type: "params_changed", Attrs: []Attr{
		{Key: "version", Value: fmt.Sprint(version + 1), Index: true},
		{Key: "approvals", Value: fmt.Sprint(len(approved))},
	}}), nil
}
