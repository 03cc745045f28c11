package ledger

import (
	"crypto/sha256"
	"fmt"
	"slices"

	"github.com/idlegrid/idlegrid/internal/keys"
)

// Validator links a CometBFT validator's consensus key to the ledger
// account its rewards go to; the accounts also approve parameter changes.
type Validator struct {
	ConsensusKey keys.PublicKey `json:"consensus_key"`
	Account      keys.Address   `json:"account"`
}

// ConsensusAddress is the validator's address as CometBFT names it in
// commits: the first 20 bytes of the SHA-256 of its ed25519 key.
func (v Validator) ConsensusAddress() []byte {
	h := sha256.Sum256(v.ConsensusKey[:])
	return h[:20]
}

func encodeValidators(vs []Validator) []byte {
	e := enc{}
	e.u32(uint32(len(vs)))
	for _, v := range vs {
		e.key(v.ConsensusKey)
		e.address(v.Account)
	}
	return e.b
}

func decodeValidators(b []byte) ([]Validator, error) {
	if b == nil {
		return nil, nil
	}
	d := dec{b: b}
	n := d.length(len(b)/36, "validator list")
	vs := make([]Validator, 0, n)
	for range n {
		vs = append(vs, Validator{ConsensusKey: d.key(), Account: d.address()})
	}
	return vs, d.end()
}

func (b *Block) validators() ([]Validator, error) {
	raw, err := b.get(keyValidators)
	if err != nil {
		return nil, err
	}
	vs, err := decodeValidators(raw)
	if err != nil {
		return nil, fmt.Errorf("ledger: validators: %w", err)
	}
	return vs, nil
}

func (b *Block) verifiers() ([]keys.Address, error) {
	raw, err := b.get(keyVerifiers)
	if err != nil || raw == nil {
		return nil, err
	}
	d := dec{b: raw}
	as := d.addresses()
	if err := d.end(); err != nil {
		return nil, fmt.Errorf("ledger: verifier list: %w", err)
	}
	return as, nil
}

// addVerifier records addr in the sorted verifier list.
func (b *Block) addVerifier(addr keys.Address) error {
	as, err := b.verifiers()
	if err != nil {
		return err
	}
	i, found := slices.BinarySearch(as, addr)
	if found {
		return nil
	}
	e := enc{}
	e.addresses(slices.Insert(as, i, addr))
	b.set(keyVerifiers, e.b)
	return nil
}

// Validators returns the validators and their reward accounts.
func (v View) Validators() ([]Validator, error) {
	raw, err := v.R.Get([]byte(keyValidators))
	if err != nil {
		return nil, err
	}
	return decodeValidators(raw)
}
