package econ

import (
	"crypto/sha256"
	"fmt"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// chainID names the simulated chain in receipts and transactions.
const chainID = "idlegrid-econ-sim"

// memState is committed ledger state in memory; an absent key reads nil.
type memState map[string][]byte

func (m memState) Get(k []byte) ([]byte, error) { return m[string(k)], nil }

var _ ledger.Reader = memState(nil)

// chain is one node without consensus: it executes every block with
// ledger.ExecuteBlock, exactly as the chain application does, and commits
// its changes to a map. Every validator signs every commit.
type chain struct {
	state   memState
	height  uint64
	appHash []byte
	signers [][]byte
}

func newChain(g ledger.Genesis) (*chain, error) {
	c := &chain{state: memState{}}
	b, err := ledger.Init(c.state, chainID, g)
	if err != nil {
		return nil, fmt.Errorf("econ: genesis: %w", err)
	}
	changes := b.Changes()
	c.commit(changes)
	c.appHash = ledger.NextAppHash(nil, changes)
	for _, v := range g.Validators {
		c.signers = append(c.signers, v.ConsensusAddress())
	}
	return c, nil
}

func (c *chain) commit(changes []ledger.Change) {
	for _, ch := range changes {
		if ch.Value == nil {
			delete(c.state, string(ch.Key))
		} else {
			c.state[string(ch.Key)] = ch.Value
		}
	}
}

// block executes the next height with txs and fails unless every
// transaction succeeded and every receipt settled: the simulation only
// builds valid ones, so a refusal is a fault of the simulation.
func (c *chain) block(txs [][]byte) (ledger.Executed, error) {
	out, err := ledger.ExecuteBlock(c.state, c.height+1, c.appHash, txs, c.signers)
	if err != nil {
		return ledger.Executed{}, fmt.Errorf("econ: %w", err)
	}
	for i, res := range out.Results {
		if res.Code != ledger.CodeOK {
			return ledger.Executed{}, fmt.Errorf("econ: block %d tx %d refused (code %d): %s", c.height+1, i, res.Code, res.Log)
		}
		for _, ev := range res.Events {
			if ev.Type == "receipt_rejected" {
				return ledger.Executed{}, fmt.Errorf("econ: block %d: receipt %s rejected: %s", c.height+1, attr(ev, "request_id"), attr(ev, "reason"))
			}
		}
	}
	c.commit(out.Changes)
	c.height++
	c.appHash = out.AppHash
	return out, nil
}

func attr(e ledger.Event, key string) string {
	for _, a := range e.Attrs {
		if a.Key == key {
			return a.Value
		}
	}
	return ""
}

func (c *chain) view() ledger.View { return ledger.View{R: c.state} }

func (c *chain) account(a keys.Address) (ledger.Account, error) {
	acct, _, err := c.view().Account(a)
	if err != nil {
		return ledger.Account{}, fmt.Errorf("econ: account %s: %w", a, err)
	}
	return acct, nil
}

// total is everything a owns on the ledger.
func (c *chain) total(a keys.Address) (money.Amount, error) {
	acct, err := c.account(a)
	if err != nil {
		return 0, err
	}
	t, err := acct.Total()
	if err != nil {
		return 0, fmt.Errorf("econ: account %s: %w", a, err)
	}
	return t, nil
}

// simKey is a fixed identity per name, so every run has the same accounts.
func simKey(name string) (keys.PrivateKey, error) {
	seed := sha256.Sum256([]byte("idlegrid econ simulation key/" + name))
	return keys.FromSeed(seed[:])
}

// job is one aggregated receipt: what a provider served one consumer in
// one settlement round.
type job struct {
	provider   keys.PrivateKey
	consumer   keys.Address
	model      string
	prompt     uint64
	completion uint64
	// Prices in base units per million tokens.
	pricePrompt, priceCompletion money.Amount
}

// signReceipt builds and signs the receipt of j as the gateway gw
// countersigns it at the given height.
func signReceipt(gw keys.PrivateKey, j *job, id string, height, blockMillis uint64) (ledger.BatchReceipt, receipt.Receipt, error) {
	amount, err := receipt.ComputeAmount(j.prompt, j.completion, j.pricePrompt, j.priceCompletion)
	if err != nil {
		return ledger.BatchReceipt{}, receipt.Receipt{}, fmt.Errorf("econ: receipt %s: %w", id, err)
	}
	end := int64(min(height*blockMillis, 1<<62))
	r := receipt.Receipt{
		Version:                receipt.Version,
		ChainID:                chainID,
		RequestID:              id,
		Gateway:                gw.Public(),
		Provider:               j.provider.Public(),
		Consumer:               j.consumer,
		Model:                  j.model,
		ModelDigest:            "sha256:" + receipt.Sum([]byte(j.model)).String(),
		PromptTokens:           j.prompt,
		CompletionTokens:       j.completion,
		PricePromptPerMTok:     j.pricePrompt,
		PriceCompletionPerMTok: j.priceCompletion,
		Amount:                 amount,
		RequestHash:            receipt.Sum([]byte("request " + id)),
		ResponseHash:           receipt.Sum([]byte("response " + id)),
		StartUnixMs:            end - int64(blockMillis),
		EndUnixMs:              end,
	}
	s := receipt.Signed{Receipt: r, ProviderSignature: receipt.SignProvider(j.provider, &r), GatewaySignature: receipt.SignGateway(gw, &r)}
	return ledger.NewBatchReceipt(&s), r, nil
}

// settleTxs wraps receipts in settle-batch transactions of at most max
// receipts each, numbered from nonce.
func settleTxs(gw keys.PrivateKey, nonce uint64, rs []ledger.BatchReceipt, max uint32) [][]byte {
	var txs [][]byte
	for lo := 0; lo < len(rs); lo += int(max) {
		part := rs[lo:min(lo+int(max), len(rs))]
		t := ledger.Tx{ChainID: chainID, Kind: ledger.KindSettleBatch, Nonce: nonce, Receipts: part, Root: ledger.BatchRoot(part)}
		t.Sign(gw)
		txs = append(txs, t.Bytes())
		nonce++
	}
	return txs
}
