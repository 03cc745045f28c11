package chainrpc

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"time"

	abci "github.com/cometbft/cometbft/abci/types"
	cmtbytes "github.com/cometbft/cometbft/libs/bytes"
	"github.com/cometbft/cometbft/mempool"
	rpcclient "github.com/cometbft/cometbft/rpc/client"
	rpchttp "github.com/cometbft/cometbft/rpc/client/http"
	ctypes "github.com/cometbft/cometbft/rpc/core/types"
	rpctypes "github.com/cometbft/cometbft/rpc/jsonrpc/types"
	"github.com/cometbft/cometbft/types"
)

// Client is how the gateway and the CLI talk to a node, in-process or over
// RPC. Its methods are safe for concurrent use.
type Client interface {
	// Broadcast runs CheckTx on tx and returns its hash once the mempool
	// holds it. A CheckTx rejection is a *TxError carrying code and log.
	Broadcast(ctx context.Context, tx []byte) ([]byte, error)
	// WaitTx waits until the tx with this hash is committed and returns its
	// result, which may carry a non-zero Code (see TxResult.Err). It ends
	// with ctx's error when ctx ends first.
	WaitTx(ctx context.Context, hash []byte) (*TxResult, error)
	// Submit broadcasts tx and waits for its result, retrying with jittered
	// backoff until ctx ends while the node is unreachable, catching up or
	// its mempool is full, and re-broadcasting while the tx does not commit
	// (a restarted node has lost its mempool). A CheckTx rejection is
	// returned at once.
	Submit(ctx context.Context, tx []byte) (*TxResult, error)
	// Query runs an ABCI query on the latest committed state; a non-zero
	// code is a *QueryError, whose codes the application defines.
	Query(ctx context.Context, path string, data []byte) ([]byte, error)
	// Status reports the latest block and whether the node is catching up.
	Status(ctx context.Context) (Status, error)
}

// TxResult is a committed transaction's outcome.
type TxResult struct {
	// Hash is the tx's SHA-256, as CometBFT names it.
	Hash []byte
	// Height is the block that holds the tx; Index its position there.
	Height int64
	Index  uint32
	// Code is the application's result code, 0 for success.
	Code      uint32
	Codespace string
	// Log and Data are what the application returned for the tx.
	Log  string
	Data []byte
	// Events are the tx's events.
	Events []abci.Event
}

// Err returns a *TxError when the application failed the committed tx, nil
// when it succeeded.
func (r *TxResult) Err() error {
	if r.Code == abci.CodeTypeOK {
		return nil
	}
	return &TxError{Hash: r.Hash, Height: r.Height, Code: r.Code, Codespace: r.Codespace, Log: r.Log, Data: r.Data}
}

// TxError is a transaction the application refused: in CheckTx (Height 0)
// or when its block was executed.
type TxError struct {
	Hash      []byte
	Height    int64
	Code      uint32
	Codespace string
	Log       string
	Data      []byte
}

// Error implements error.
func (e *TxError) Error() string {
	if e.Height == 0 {
		return fmt.Sprintf("tx %X rejected by CheckTx: code %d%s: %s", e.Hash, e.Code, codespace(e.Codespace), e.Log)
	}
	return fmt.Sprintf("tx %X failed at height %d: code %d%s: %s", e.Hash, e.Height, e.Code, codespace(e.Codespace), e.Log)
}

// QueryError is an ABCI query the application answered with a non-zero code.
type QueryError struct {
	Path      string
	Code      uint32
	Codespace string
	Log       string
}

// Error implements error.
func (e *QueryError) Error() string {
	return fmt.Sprintf("query %s: code %d%s: %s", e.Path, e.Code, codespace(e.Codespace), e.Log)
}

func codespace(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

// Status is a node's view of the chain head.
type Status struct {
	ChainID string
	// Height and Time are the latest block's; AppHash is in its header, so
	// it is the state after the block before it.
	Height  int64
	AppHash []byte
	Time    time.Time
	// CatchingUp is true while the node syncs blocks from its peers; it
	// refuses new transactions meanwhile.
	CatchingUp bool
}

// catchingUp is the text of rpc/core's ErrEndpointClosedCatchingUp, which
// a node answers a broadcast with while it syncs. It is matched by text, in
// process as over HTTP, so that the client does not link rpc/core (and with
// it the node's state, store and consensus packages); TestCatchingUpText
// keeps it equal to CometBFT's.
const catchingUp = "endpoint is closed while node is catching up"

// Polling and retry intervals; the backoff is jittered so that many
// clients that lost one node do not return to it in step.
const (
	pollMin         = 20 * time.Millisecond
	pollMax         = 100 * time.Millisecond
	retryMin        = 100 * time.Millisecond
	retryMax        = 2 * time.Second
	rebroadcastWait = 10 * time.Second
)

// NewHTTPClient returns a client for the node whose RPC server is at rpcURL
// (http://host:port, as Node.RPCAddr returns).
func NewHTTPClient(rpcURL string) (Client, error) {
	c, err := rpchttp.New(rpcURL)
	if err != nil {
		return nil, fmt.Errorf("RPC client for %s: %w", rpcURL, err)
	}
	return NewRemoteClient(c), nil
}

// NewRemoteClient returns a client that calls a node in another process
// through api (an RPC transport such as rpc/client/http): errors that are
// not the node's answers are transport failures, retried by Submit.
func NewRemoteClient(api NodeAPI) Client { return newRPCClient(api, true) }

// NewLocalClient returns a client that calls a node in-process through api
// (rpc/client/local, as chain.Node does). Only the node's own error values
// arrive there, so an error that is none of them is final, not a transport
// error worth a retry.
func NewLocalClient(api NodeAPI) Client { return newRPCClient(api, false) }

// NodeAPI is the part of CometBFT's RPC client interface that the client
// uses; the in-process (rpc/client/local) and the HTTP client implement it.
type NodeAPI interface {
	BroadcastTxSync(ctx context.Context, tx types.Tx) (*ctypes.ResultBroadcastTx, error)
	Tx(ctx context.Context, hash []byte, prove bool) (*ctypes.ResultTx, error)
	ABCIQueryWithOptions(ctx context.Context, path string, data cmtbytes.HexBytes, opts rpcclient.ABCIQueryOptions) (*ctypes.ResultABCIQuery, error)
	Status(ctx context.Context) (*ctypes.ResultStatus, error)
}

// rpcClient implements Client over NodeAPI.
type rpcClient struct {
	c NodeAPI
	// remote: errors other than JSON-RPC errors are transport errors, worth
	// a retry. In-process there is no transport.
	remote bool
}

var _ Client = (*rpcClient)(nil)

func newRPCClient(c NodeAPI, remote bool) *rpcClient {
	return &rpcClient{c: c, remote: remote}
}

// ErrNodeStopped is returned by an in-process client whose node has stopped.
var ErrNodeStopped = errors.New("node stopped")

// ErrUnavailable is wrapped by errors from a node that cannot take a
// transaction now but may soon: unreachable, catching up, or with a full
// mempool. Submit retries them; other errors are final.
var ErrUnavailable = errors.New("node unavailable")

// Broadcast implements Client. A tx the node already has (in its mempool,
// or committed and still in its mempool cache) is not an error: its hash is
// returned, so a broadcast retried after a lost answer is harmless.
func (c *rpcClient) Broadcast(ctx context.Context, tx []byte) ([]byte, error) {
	hash := types.Tx(tx).Hash()
	res, err := c.c.BroadcastTxSync(ctx, tx)
	if err != nil {
		// CometBFT v1 reports a CheckTx refusal as an error, not a code.
		if te := checkTxError(err); te != nil {
			te.Hash = hash
			return nil, te
		}
		switch c.classify(err) {
		case errKnown:
			return hash, nil
		case errRetry:
			return nil, fmt.Errorf("broadcast tx %X: %w: %w", hash, ErrUnavailable, err)
		}
		return nil, fmt.Errorf("broadcast tx %X: %w", hash, err)
	}
	if res.Code != abci.CodeTypeOK {
		return nil, &TxError{Hash: hash, Code: res.Code, Codespace: res.Codespace, Log: res.Log, Data: res.Data}
	}
	return hash, nil
}

// invalidTxRE parses mempool.ErrInvalidTx's text, all that is left of it
// over HTTP.
var invalidTxRE = regexp.MustCompile(`(?s)is invalid: code=(\d+), data=([0-9A-F]*), log='(.*)', codespace='([^']*)'$`)

// checkTxError returns the CheckTx refusal err carries, or nil.
func checkTxError(err error) *TxError {
	var inv mempool.ErrInvalidTx
	if errors.As(err, &inv) {
		return &TxError{Code: inv.Code, Codespace: inv.Codespace, Log: inv.Log, Data: inv.Data}
	}
	var rpcErr *rpctypes.RPCError
	if !errors.As(err, &rpcErr) {
		return nil
	}
	m := invalidTxRE.FindStringSubmatch(rpcErr.Data)
	if m == nil {
		return nil
	}
	code, perr := strconv.ParseUint(m[1], 10, 32)
	if perr != nil {
		return nil
	}
	data, _ := hex.DecodeString(m[2])
	return &TxError{Code: uint32(code), Data: data, Log: m[3], Codespace: m[4]}
}

// WaitTx implements Client. It polls the tx index rather than subscribing
// to events: a poll cannot miss a tx committed before it started, survives
// the node restarting or the connection dropping, and holds none of the
// node's limited subscription slots; an indexed lookup every ≤100 ms costs
// the node next to nothing.
func (c *rpcClient) WaitTx(ctx context.Context, hash []byte) (*TxResult, error) {
	wait := pollMin
	var lastErr error
	for {
		res, err := c.c.Tx(ctx, hash, false)
		if err == nil {
			return txResult(res.Hash, res.Height, res.Index, &res.TxResult), nil
		}
		if ctx.Err() != nil {
			return nil, waitError(ctx, hash, lastErr)
		}
		if errors.Is(err, ErrNodeStopped) || strings.Contains(err.Error(), "indexing is disabled") {
			return nil, fmt.Errorf("wait for tx %X: %w", hash, err)
		}
		if !isNotFound(err) {
			lastErr = err // a transport error or a restarting node: poll on
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, waitError(ctx, hash, lastErr)
		}
		wait = min(wait*2, pollMax)
	}
}

func waitError(ctx context.Context, hash []byte, lastErr error) error {
	if lastErr != nil {
		return fmt.Errorf("wait for tx %X: %w (last error: %v)", hash, context.Cause(ctx), lastErr)
	}
	return fmt.Errorf("wait for tx %X: not committed: %w", hash, context.Cause(ctx))
}

// Submit implements Client.
func (c *rpcClient) Submit(ctx context.Context, tx []byte) (*TxResult, error) {
	hash := types.Tx(tx).Hash()
	backoff := retryMin
	var lastErr error
	for attempt := 0; ; attempt++ {
		_, err := c.Broadcast(ctx, tx)
		switch {
		case err == nil:
			// In the mempool: wait for the block.
			wctx, cancel := context.WithTimeout(ctx, rebroadcastWait)
			res, werr := c.WaitTx(wctx, hash)
			cancel()
			if werr == nil {
				return res, nil
			}
			if ctx.Err() != nil || !errors.Is(werr, context.DeadlineExceeded) {
				return nil, fmt.Errorf("submit: %w", werr)
			}
			// Not committed yet: broadcast again, in case the node lost it
			// (a restarted node starts with an empty mempool).
			lastErr, backoff = werr, retryMin
			continue
		case ctx.Err() != nil:
			return nil, submitError(ctx, hash, err)
		case errors.Is(err, ErrUnavailable):
			lastErr = err
		default:
			// A refusal after a retry may mean the tx already committed: the
			// answer to an earlier broadcast was lost, and the tx, invalid
			// now, has left the mempool cache.
			if attempt > 0 {
				if res, terr := c.c.Tx(ctx, hash, false); terr == nil {
					return txResult(res.Hash, res.Height, res.Index, &res.TxResult), nil
				}
			}
			return nil, err
		}
		if err := sleep(ctx, jitter(backoff)); err != nil {
			return nil, submitError(ctx, hash, lastErr)
		}
		backoff = min(backoff*2, retryMax)
	}
}

func submitError(ctx context.Context, hash []byte, lastErr error) error {
	return fmt.Errorf("submit tx %X: %w (last error: %v)", hash, context.Cause(ctx), lastErr)
}

// Query implements Client.
func (c *rpcClient) Query(ctx context.Context, path string, data []byte) ([]byte, error) {
	res, err := c.c.ABCIQueryWithOptions(ctx, path, data, rpcclient.ABCIQueryOptions{})
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", path, err)
	}
	r := res.Response
	if r.Code != abci.CodeTypeOK {
		return nil, &QueryError{Path: path, Code: r.Code, Codespace: r.Codespace, Log: r.Log}
	}
	return r.Value, nil
}

// Status implements Client.
func (c *rpcClient) Status(ctx context.Context) (Status, error) {
	res, err := c.c.Status(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("node status: %w", err)
	}
	return Status{
		ChainID:    res.NodeInfo.Network,
		Height:     res.SyncInfo.LatestBlockHeight,
		AppHash:    res.SyncInfo.LatestAppHash,
		Time:       res.SyncInfo.LatestBlockTime,
		CatchingUp: res.SyncInfo.CatchingUp,
	}, nil
}

func txResult(hash []byte, height int64, index uint32, r *abci.ExecTxResult) *TxResult {
	return &TxResult{
		Hash: hash, Height: height, Index: index,
		Code: r.Code, Codespace: r.Codespace, Log: r.Log, Data: r.Data, Events: r.Events,
	}
}

// errKind says what Broadcast makes of a failed BroadcastTxSync.
type errKind int

const (
	errFatal errKind = iota // give up: the tx or the request is wrong
	errRetry                // the node cannot take it now: try again
	errKnown                // the node already has the tx: wait for it
)

// classify sorts a BroadcastTxSync error. In-process the mempool's own error
// values arrive; over HTTP only their text survives, inside a JSON-RPC
// error, so both are matched.
func (c *rpcClient) classify(err error) errKind {
	var full mempool.ErrMempoolIsFull
	switch {
	case errors.Is(err, mempool.ErrTxInCache), errors.Is(err, mempool.ErrTxInMempool):
		return errKnown
	case strings.Contains(err.Error(), catchingUp), errors.Is(err, mempool.ErrRecheckFull), errors.As(err, &full):
		return errRetry
	}
	var rpcErr *rpctypes.RPCError
	if !errors.As(err, &rpcErr) {
		if c.remote {
			return errRetry // no JSON-RPC answer: the node is unreachable
		}
		return errFatal
	}
	msg := rpcErr.Data
	switch {
	case strings.Contains(msg, mempool.ErrTxInCache.Error()), strings.Contains(msg, mempool.ErrTxInMempool.Error()):
		return errKnown
	case strings.Contains(msg, catchingUp),
		strings.Contains(msg, "mempool is full"),
		strings.Contains(msg, mempool.ErrRecheckFull.Error()):
		return errRetry
	}
	return errFatal
}

// isNotFound reports the tx index's "tx (…) not found", which has no error
// value to match.
func isNotFound(err error) bool {
	return strings.Contains(err.Error(), ") not found")
}

// jitter spreads d over [d/2, d).
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx ends, whichever is first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
