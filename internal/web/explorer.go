package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/store"
)

// Sizes of the explorer's lists.
const (
	blocksShown = 20
	epochsShown = 30
	maxIDLen    = 200 // longer request ids or addresses are refused unread
)

// noLedger answers explorer pages of a gateway that runs without a ledger.
func (u *UI) noLedger(w http.ResponseWriter) bool {
	if u.cfg.Ledger != nil && u.cfg.Blocks != nil {
		return false
	}
	u.render(w, http.StatusNotFound, "message.html", &page{Title: "No ledger", Nav: "explorer",
		Data: "This gateway runs without a ledger (no --chain-rpc): there are no blocks, settlements or epochs to show."})
	return true
}

type blockRow struct {
	Height int64
	Time   time.Time
	Txs    int
	Hash   string
}

type blocksData struct {
	Height  int64
	AppHash []byte
	Blocks  []blockRow
}

func (u *UI) blocks(w http.ResponseWriter, r *http.Request) {
	if u.noLedger(w) {
		return
	}
	ctx, cancel := u.ctx(r)
	defer cancel()
	p := &page{Title: "Explorer", Nav: "explorer"}
	var d blocksData
	var err error
	if d.Height, d.AppHash, err = u.cfg.Blocks.Latest(ctx); err != nil {
		p.note("The ledger is unreachable: %v", err)
	}
	for h := d.Height; h > 0 && h > d.Height-blocksShown; h-- {
		b, err := u.cfg.Blocks.Block(ctx, h)
		if err != nil || b == nil {
			p.note("Block %d is unavailable: %v", h, err)
			break
		}
		d.Blocks = append(d.Blocks, blockRow{Height: h, Time: b.Time, Txs: len(b.Txs), Hash: b.Hash().String()})
	}
	p.Data = d
	u.render(w, http.StatusOK, "blocks.html", p)
}

// txRow is one decoded transaction of a block.
type txRow struct {
	Hash    receipt.Hash
	Kind    string
	Sender  keys.Address
	Nonce   uint64
	Code    string
	Summary string
	// Receipts are a settle-batch's request ids.
	Receipts []string
}

type blockData struct {
	Height   int64
	Time     time.Time
	Hash     string
	AppHash  string
	Proposer string
	Txs      []txRow
}

func (u *UI) block(w http.ResponseWriter, r *http.Request) {
	if u.noLedger(w) {
		return
	}
	h, err := strconv.ParseInt(r.PathValue("height"), 10, 64)
	if err != nil || h <= 0 {
		u.badRequest(w, "A block height is a positive integer.")
		return
	}
	ctx, cancel := u.ctx(r)
	defer cancel()
	latest, _, err := u.cfg.Blocks.Latest(ctx)
	if err != nil {
		u.unavailable(w, err)
		return
	}
	if h > latest {
		u.notFound(w, r, "Block "+strconv.FormatInt(h, 10)+" does not exist yet; the latest is "+strconv.FormatInt(latest, 10)+".")
		return
	}
	b, err := u.cfg.Blocks.Block(ctx, h)
	if err != nil || b == nil {
		u.unavailable(w, err)
		return
	}
	p := &page{Title: "Block " + strconv.FormatInt(h, 10), Nav: "explorer"}
	d := blockData{Height: h, Time: b.Time, Hash: b.Hash().String(), AppHash: b.AppHash.String(), Proposer: b.ProposerAddress.String()}
	for _, raw := range b.Txs {
		row := txRow{Hash: ledger.TxHash(raw)}
		tx, err := ledger.DecodeTx(raw)
		if err != nil {
			row.Kind, row.Summary = "undecodable", err.Error()
			d.Txs = append(d.Txs, row)
			continue
		}
		row.Kind, row.Sender, row.Nonce = tx.Kind.String(), tx.Sender.Address(), tx.Nonce
		row.Summary, row.Receipts = summarize(&tx)
		switch rec, err := u.cfg.Ledger.Tx(ctx, row.Hash); {
		case err != nil:
			row.Code = "unknown"
		case rec.Code == 0:
			row.Code = "ok"
		default:
			row.Code = "failed (code " + strconv.FormatUint(uint64(rec.Code), 10) + ")"
		}
		d.Txs = append(d.Txs, row)
	}
	p.Data = d
	u.render(w, http.StatusOK, "block.html", p)
}

// summarize describes a transaction's body in a line.
func summarize(tx *ledger.Tx) (string, []string) {
	switch tx.Kind {
	case ledger.KindTransfer:
		return tx.Amount.String() + " to " + string(tx.To), nil
	case ledger.KindStake, ledger.KindUnstake:
		return tx.Amount.String(), nil
	case ledger.KindRegister:
		return tx.Role.String() + " " + strconv.Quote(tx.Info), nil
	case ledger.KindApprove:
		return "deposit " + tx.Amount.String() + " for " + string(tx.Gateway), nil
	case ledger.KindSettleBatch:
		var ids []string
		for _, br := range tx.Receipts {
			if rc, err := receipt.Decode(br.Bytes); err == nil {
				ids = append(ids, rc.RequestID)
			}
		}
		return strconv.Itoa(len(tx.Receipts)) + " receipts, root " + tx.Root.String(), ids
	}
	return "", nil
}

func (u *UI) unavailable(w http.ResponseWriter, err error) {
	u.log.Warn("web: ledger read failed", "err", err)
	u.render(w, http.StatusBadGateway, "message.html", &page{Title: "Ledger unavailable", Nav: "explorer",
		Data: "The ledger could not be read right now; please retry."})
}

// receiptSearch turns the explorer's search form into the receipt's page.
// Request ids are unique per gateway: the form names the gateway that
// settled the receipt, this one by default.
func (u *UI) receiptSearch(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimSpace(r.URL.Query().Get("id"))
	if id == "" || len(id) > maxIDLen {
		u.badRequest(w, "Enter a request id (as in a response's id field).")
		return
	}
	gateway := keys.Address(strings.TrimSpace(r.URL.Query().Get("gateway")))
	if gateway == "" {
		gateway = u.cfg.Gateway
	}
	if err := gateway.Validate(); err != nil {
		u.badRequest(w, "Enter the address of the gateway that settled the receipt (request ids are unique per gateway).")
		return
	}
	http.Redirect(w, r, Prefix+"explorer/receipt/"+string(gateway)+"/"+url.PathEscape(id), http.StatusSeeOther)
}

// receiptHere sends a request id without a gateway to this gateway's page
// of it.
func (u *UI) receiptHere(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if len(id) > maxIDLen || u.cfg.Gateway.Validate() != nil {
		u.badRequest(w, "Name the gateway that settled the receipt: "+Prefix+"explorer/receipt/GATEWAY/REQUEST_ID (request ids are unique per gateway).")
		return
	}
	http.Redirect(w, r, Prefix+"explorer/receipt/"+string(u.cfg.Gateway)+"/"+url.PathEscape(id), http.StatusSeeOther)
}

type receiptData struct {
	ID      string
	Gateway keys.Address
	// Settlement is the ledger's record; nil when not settled (yet).
	Settlement *ledger.Settlement
	// Stored is this gateway's copy, shown when it matches the settled
	// receipt (the ledger published it) — a pending receipt's details stay
	// private, as the API's GET /v1/receipts/{id} keeps them.
	Stored  *receipt.Receipt
	Pending bool
}

func (u *UI) receipt(w http.ResponseWriter, r *http.Request) {
	if u.noLedger(w) {
		return
	}
	id := r.PathValue("id")
	if len(id) > maxIDLen {
		u.badRequest(w, "That request id is too long.")
		return
	}
	gateway := keys.Address(r.PathValue("gateway"))
	if err := gateway.Validate(); err != nil {
		u.badRequest(w, "That gateway address is not valid.")
		return
	}
	ctx, cancel := u.ctx(r)
	defer cancel()
	d := receiptData{ID: id, Gateway: gateway}
	st, err := u.cfg.Ledger.Settlement(ctx, gateway, id)
	switch {
	case errors.Is(err, chainrpc.ErrNotFound):
	case err != nil:
		u.unavailable(w, err)
		return
	default:
		d.Settlement = &st
	}
	stored, serr := u.cfg.Receipts.Receipt(ctx, id)
	if serr == nil && stored.Receipt.Gateway.Address() != gateway {
		serr = store.ErrNotFound // another gateway's id: this store's copy is not it
	}
	switch {
	case serr == nil && d.Settlement != nil && stored.Receipt.Hash() == st.Receipt:
		d.Stored = &stored.Receipt
	case serr == nil && d.Settlement == nil:
		d.Pending = true
	case serr != nil && !errors.Is(serr, store.ErrNotFound):
		u.log.Error("web: read receipt", "request_id", id, "err", serr)
	}
	if d.Settlement == nil && !d.Pending {
		u.notFound(w, r, "No receipt with request id "+strconv.Quote(id)+" is settled on the ledger.")
		return
	}
	u.render(w, http.StatusOK, "receipt.html", &page{Title: "Receipt " + id, Nav: "explorer", Data: d})
}

type epochsData struct {
	Current chainrpc.EpochInfo
	Epochs  []ledger.EpochRecord
	Minted  chart
}

func (u *UI) epochs(w http.ResponseWriter, r *http.Request) {
	if u.noLedger(w) {
		return
	}
	ctx, cancel := u.ctx(r)
	defer cancel()
	cur, err := u.cfg.Ledger.EpochState(ctx)
	if err != nil {
		u.unavailable(w, err)
		return
	}
	p := &page{Title: "Epochs", Nav: "epochs"}
	d := epochsData{Current: cur}
	// Finished epochs, newest first; the running one has no record yet.
	for n := cur.Number; n > 0 && len(d.Epochs) < epochsShown; n-- {
		rec, err := u.cfg.Ledger.Epoch(ctx, n-1)
		if errors.Is(err, chainrpc.ErrNotFound) {
			continue
		}
		if err != nil {
			p.note("Epoch %d is unavailable: %v", n-1, err)
			break
		}
		d.Epochs = append(d.Epochs, rec)
	}
	points := make([]point, len(d.Epochs))
	for i, e := range d.Epochs {
		points[len(points)-1-i] = point{Label: "epoch " + strconv.FormatUint(e.Number, 10), Value: uint64(e.Minted)}
	}
	d.Minted = newChart("Minted per epoch (tokens)", points, func(v uint64) string { return money.Amount(v).String() })
	p.Data = d
	u.render(w, http.StatusOK, "epochs.html", p)
}

type epochData struct {
	Record  ledger.EpochRecord
	Payouts []ledger.Payout
}

func (u *UI) epoch(w http.ResponseWriter, r *http.Request) {
	if u.noLedger(w) {
		return
	}
	n, err := strconv.ParseUint(r.PathValue("n"), 10, 64)
	if err != nil {
		u.badRequest(w, "An epoch number is a non-negative integer.")
		return
	}
	ctx, cancel := u.ctx(r)
	defer cancel()
	rec, err := u.cfg.Ledger.Epoch(ctx, n)
	if errors.Is(err, chainrpc.ErrNotFound) {
		u.notFound(w, r, "Epoch "+strconv.FormatUint(n, 10)+" has not ended yet.")
		return
	}
	if err != nil {
		u.unavailable(w, err)
		return
	}
	p := &page{Title: "Epoch " + strconv.FormatUint(n, 10), Nav: "epochs"}
	d := epochData{Record: rec}
	if d.Payouts, err = u.cfg.Ledger.Payouts(ctx, n); err != nil {
		p.note("Payouts are unavailable: %v", err)
	}
	p.Data = d
	u.render(w, http.StatusOK, "epoch.html", p)
}

// providerSearch turns the explorer's search form (an address or a public
// key) into the provider's page.
func (u *UI) providerSearch(w http.ResponseWriter, r *http.Request) {
	addr, ok := parseAccount(r.URL.Query().Get("addr"))
	if !ok {
		u.badRequest(w, "Enter a provider's account address or public key.")
		return
	}
	http.Redirect(w, r, Prefix+"explorer/provider/"+url.PathEscape(string(addr)), http.StatusSeeOther)
}

// parseAccount reads an address, or a public key standing for its address.
func parseAccount(s string) (keys.Address, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > maxIDLen {
		return "", false
	}
	if k, err := keys.ParsePublicKey(s); err == nil {
		return k.Address(), true
	}
	a := keys.Address(s)
	return a, a.Validate() == nil
}

type providerData struct {
	Address keys.Address
	Account *chainrpc.AccountInfo
	Record  *chainrpc.ProviderInfo
	Online  *hub.Info
	Models  []string
	Escrow  money.Amount
	Unbond  money.Amount
	Vesting money.Amount
}

// readAccount fills in the provider's ledger account and its totals; an
// account the ledger does not know is left nil without an error.
func (d *providerData) readAccount(ctx context.Context, l Chain) error {
	a, err := l.Account(ctx, d.Address)
	switch {
	case errors.Is(err, chainrpc.ErrNotFound):
		return nil
	case err != nil:
		return err
	}
	d.Account = &a
	for _, e := range a.Escrow {
		d.Escrow += e.Amount
	}
	for _, e := range a.Unbonding {
		d.Unbond += e.Amount
	}
	for _, v := range a.Vesting {
		d.Vesting += v.Amount - v.Released
	}
	return nil
}

// providerEarnings answers a provider's ledger totals as JSON, for the
// /contribute page's live view: what its settled receipts paid into escrow,
// its balance, stake and unvested rewards. All public ledger data; amounts
// are strings of base units, which JavaScript reads exactly as BigInt.
func (u *UI) providerEarnings(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	addr, ok := parseAccount(r.PathValue("addr"))
	if !ok {
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"error": "That is not an account address or public key."})
		return
	}
	out := struct {
		Ledger  bool         `json:"ledger"`
		Known   bool         `json:"known"`
		Balance money.Amount `json:"balance,string"`
		Stake   money.Amount `json:"stake,string"`
		Escrow  money.Amount `json:"escrow,string"`
		Vesting money.Amount `json:"vesting,string"`
	}{Ledger: u.cfg.Ledger != nil}
	if u.cfg.Ledger != nil {
		ctx, cancel := u.ctx(r)
		defer cancel()
		d := providerData{Address: addr}
		if err := d.readAccount(ctx, u.cfg.Ledger); err != nil {
			w.WriteHeader(http.StatusBadGateway)
			json.NewEncoder(w).Encode(map[string]string{"error": "The ledger is unavailable: " + err.Error()})
			return
		}
		if d.Account != nil {
			out.Known, out.Balance, out.Stake, out.Escrow, out.Vesting = true, d.Account.Balance, d.Account.Stake, d.Escrow, d.Vesting
		}
	}
	json.NewEncoder(w).Encode(out)
}

func (u *UI) provider(w http.ResponseWriter, r *http.Request) {
	addr, ok := parseAccount(r.PathValue("addr"))
	if !ok {
		u.badRequest(w, "That is not an account address or public key.")
		return
	}
	p := &page{Title: "Provider " + string(addr), Nav: "explorer"}
	d := providerData{Address: addr}
	for _, info := range u.cfg.Hub.Snapshot() {
		if info.Key.Address() == addr {
			d.Online = &info
			for _, m := range info.Capabilities.Models {
				d.Models = append(d.Models, m.Name)
			}
		}
	}
	if u.cfg.Ledger != nil {
		ctx, cancel := u.ctx(r)
		defer cancel()
		if err := d.readAccount(ctx, u.cfg.Ledger); err != nil {
			p.note("The account is unavailable: %v", err)
		}
		pr, err := u.cfg.Ledger.Provider(ctx, addr)
		switch {
		case errors.Is(err, chainrpc.ErrNotFound):
		case err != nil:
			p.note("The verification record is unavailable: %v", err)
		default:
			d.Record = &pr
		}
	} else {
		p.note("This gateway runs without a ledger: stake, earnings and reputation are not shown.")
	}
	if d.Account == nil && d.Record == nil && d.Online == nil {
		u.notFound(w, r, "Neither the ledger nor this gateway knows the account "+string(addr)+".")
		return
	}
	p.Data = d
	u.render(w, http.StatusOK, "provider.html", p)
}
