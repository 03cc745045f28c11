package chain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	abci "github.com/cometbft/cometbft/abci/types"
	cfg "github.com/cometbft/cometbft/config"
	cmtbytes "github.com/cometbft/cometbft/libs/bytes"
	cmtjson "github.com/cometbft/cometbft/libs/json"
	nm "github.com/cometbft/cometbft/node"
	"github.com/cometbft/cometbft/p2p"
	"github.com/cometbft/cometbft/privval"
	"github.com/cometbft/cometbft/proxy"
	rpcclient "github.com/cometbft/cometbft/rpc/client"
	"github.com/cometbft/cometbft/rpc/client/local"
	ctypes "github.com/cometbft/cometbft/rpc/core/types"
	"github.com/cometbft/cometbft/types"
	"github.com/spf13/viper"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
)

// NodeConfig says where a node lives and what it runs.
type NodeConfig struct {
	// Home is the CometBFT home: config/config.toml, config/genesis.json,
	// config/*key.json and data/, as InitSingle or InitNetwork write it.
	Home string
	// App is the ABCI application, run in-process. CometBFT calls it from
	// its consensus, mempool and query connections, each in order but the
	// three concurrently (proxy.NewConnSyncLocalClientCreator), so that
	// CheckTx and Query need not wait for a block to execute: the app must
	// be safe for that. The node does not close it: its owner does, after
	// Stop.
	App abci.Application
	// Logger receives CometBFT's logs; its chatty info logs arrive at debug
	// level. Nil discards them.
	Logger *slog.Logger
	// RPCListenAddr, when set, replaces rpc.laddr from config.toml for this
	// run, e.g. "tcp://127.0.0.1:26657" for a well-known local port; homes
	// from InitSingle otherwise get a free port at every start.
	RPCListenAddr string
	// MetricsListenAddr, when set, serves CometBFT's Prometheus metrics
	// (block height, consensus rounds, mempool, peers) at
	// http://ADDR/metrics, e.g. "127.0.0.1:26660".
	MetricsListenAddr string
}

// Node is a running CometBFT node with its application in-process.
type Node struct {
	node    *nm.Node
	dbs     *dbSet
	api     *stoppableAPI
	client  chainrpc.Client
	rpcAddr string
	// stopping quiets the errors CometBFT logs while it shuts down.
	stopping *atomic.Bool

	stopOnce sync.Once
	stopErr  error
}

// StartNode loads config.toml from cfg.Home, starts the node, and returns
// once it is running: its RPC server listens and consensus (or block sync,
// when other validators are ahead) has started. An RPC listen address with
// port 0 gets a free port, reported by RPCAddr. ctx bounds the start-up,
// which replays blocks the application has not seen yet.
func StartNode(ctx context.Context, nc NodeConfig) (*Node, error) {
	if nc.App == nil {
		return nil, errors.New("start node: no ABCI application")
	}
	c, err := LoadConfig(nc.Home)
	if err != nil {
		return nil, err
	}
	if nc.MetricsListenAddr != "" {
		c.Instrumentation.Prometheus = true
		c.Instrumentation.PrometheusListenAddr = nc.MetricsListenAddr
	}
	if nc.RPCListenAddr != "" {
		c.RPC.ListenAddress = nc.RPCListenAddr
	}
	slogger := orDiscard(nc.Logger)
	stopping := &atomic.Bool{}
	logger := slogLogger{l: slogger, stopping: stopping}
	for _, w := range c.CheckDeprecated() {
		logger.Error("deprecated CometBFT setting", "file", configFile(nc.Home), "warning", w)
	}
	rpcAddr, err := resolveRPCAddr(c)
	if err != nil {
		return nil, err
	}
	nodeKey, err := p2p.LoadNodeKey(c.NodeKeyFile())
	if err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	pv, err := loadFilePV(c)
	if err != nil {
		return nil, err
	}
	dbs := &dbSet{log: slogger}
	n, err := nm.NewNode(ctx, c, pv, nodeKey,
		proxy.NewConnSyncLocalClientCreator(nc.App),
		nm.DefaultGenesisDocProviderFunc(c),
		dbs.open,
		nm.DefaultMetricsProvider(c.Instrumentation),
		logger)
	if err != nil {
		// NewNode does not undo what it started; the databases at least
		// must be closed, or the next attempt finds them locked.
		return nil, errors.Join(fmt.Errorf("create node in %s: %w", nc.Home, err), dbs.closeAll())
	}
	if err := ctx.Err(); err != nil {
		stopping.Store(true)
		return nil, errors.Join(fmt.Errorf("start node in %s: %w", nc.Home, err), stopCreated(n, dbs))
	}
	if err := n.Start(); err != nil {
		// Undoing a half-started node makes CometBFT log an error for each
		// service it had not started yet: noise next to the real error.
		stopping.Store(true)
		if strings.Contains(err.Error(), "address already in use") {
			err = fmt.Errorf("%w (another node or `idlegrid up` holds the port; choose another RPC address, e.g. `up --chain-rpc-addr 127.0.0.1:26658`)", err)
		}
		return nil, errors.Join(fmt.Errorf("start node in %s: %w", nc.Home, err), stopCreated(n, dbs))
	}
	api := &stoppableAPI{api: local.New(n)}
	return &Node{
		node:     n,
		dbs:      dbs,
		api:      api,
		client:   chainrpc.NewLocalClient(api),
		rpcAddr:  rpcAddr,
		stopping: stopping,
	}, nil
}

// stopCreated releases a node that was created but did not start: its
// OnStop tolerates services that never started.
func stopCreated(n *nm.Node, dbs *dbSet) error {
	n.OnStop()
	return errors.Join(n.ProxyApp().Stop(), dbs.closeAll())
}

// Client returns a client that calls the node in-process, without HTTP.
// Once the node stops, its calls fail with chainrpc.ErrNodeStopped.
func (n *Node) Client() chainrpc.Client { return n.client }

// RPCAddr is the base URL of the node's RPC server, http://127.0.0.1:PORT,
// for chainrpc.NewHTTPClient; empty when the RPC server is disabled.
func (n *Node) RPCAddr() string { return n.rpcAddr }

// Stop stops the node and waits until it has stopped and closed its
// databases. It is safe to call more than once; later calls return the
// first call's result. The application is not closed.
func (n *Node) Stop() error {
	n.stopOnce.Do(func() {
		n.stopping.Store(true)
		n.api.stop()
		var errs []error
		if err := n.node.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop node: %w", err))
		} else {
			n.node.Wait()
		}
		// CometBFT never stops the ABCI connections it started, nor closes
		// the tx index; without this a restart in the same process would
		// find the index locked.
		if err := n.node.ProxyApp().Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop ABCI connections: %w", err))
		}
		errs = append(errs, n.dbs.closeAll())
		n.stopErr = errors.Join(errs...)
	})
	return n.stopErr
}

// stoppableAPI guards an in-process node's API: Stop waits for the calls in
// progress, and later calls fail with chainrpc.ErrNodeStopped instead of reaching
// closed databases and a closed application.
type stoppableAPI struct {
	api     chainrpc.NodeAPI
	mu      sync.RWMutex
	stopped bool
}

var _ chainrpc.NodeAPI = (*stoppableAPI)(nil)

// stop waits for the calls in progress and fails every later one.
func (s *stoppableAPI) stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
}

// enter read-locks s for one call; the caller unlocks when it returns nil.
func (s *stoppableAPI) enter() error {
	s.mu.RLock()
	if s.stopped {
		s.mu.RUnlock()
		return chainrpc.ErrNodeStopped
	}
	return nil
}

func (s *stoppableAPI) BroadcastTxSync(ctx context.Context, tx types.Tx) (*ctypes.ResultBroadcastTx, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	return s.api.BroadcastTxSync(ctx, tx)
}

func (s *stoppableAPI) Tx(ctx context.Context, hash []byte, prove bool) (*ctypes.ResultTx, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	return s.api.Tx(ctx, hash, prove)
}

func (s *stoppableAPI) ABCIQueryWithOptions(ctx context.Context, path string, data cmtbytes.HexBytes, opts rpcclient.ABCIQueryOptions) (*ctypes.ResultABCIQuery, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	return s.api.ABCIQueryWithOptions(ctx, path, data, opts)
}

func (s *stoppableAPI) Status(ctx context.Context) (*ctypes.ResultStatus, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	return s.api.Status(ctx)
}

// LoadConfig reads home's config.toml the way CometBFT's own command does
// (viper over the mapstructure tags), on top of CometBFT's defaults.
func LoadConfig(home string) (*cfg.Config, error) {
	path := configFile(home)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("CometBFT config %s: %w (initialise the home first)", path, err)
	}
	v := viper.New()
	v.SetConfigFile(path)
	if err := v.ReadInConfig(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	c := cfg.DefaultConfig()
	if err := v.Unmarshal(c); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	c.SetRoot(home)
	if err := c.ValidateBasic(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// resolveRPCAddr gives a TCP RPC listen address with port 0 a free port
// (CometBFT would bind one but not tell which) and returns the RPC base URL.
// Another process could take the port between the probe and CometBFT's
// listen; the start then fails with "address already in use".
func resolveRPCAddr(c *cfg.Config) (string, error) {
	laddr := c.RPC.ListenAddress
	if laddr == "" {
		return "", nil
	}
	if strings.Contains(laddr, ",") {
		laddr = strings.TrimSpace(strings.Split(laddr, ",")[0])
	}
	hostPort, ok := strings.CutPrefix(laddr, "tcp://")
	if !ok {
		return laddr, nil // a unix socket: no HTTP URL to offer
	}
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		return "", fmt.Errorf("rpc.laddr %q: %w", laddr, err)
	}
	if port == "0" {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return "", fmt.Errorf("find a free RPC port: %w", err)
		}
		hostPort = l.Addr().String()
		if err := l.Close(); err != nil {
			return "", fmt.Errorf("find a free RPC port: %w", err)
		}
		c.RPC.ListenAddress = strings.Replace(c.RPC.ListenAddress, laddr, "tcp://"+hostPort, 1)
		host, _, _ = net.SplitHostPort(hostPort)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		_, port, _ := net.SplitHostPort(hostPort)
		hostPort = net.JoinHostPort("127.0.0.1", port)
	}
	return "http://" + hostPort, nil
}

// loadFilePV loads the validator key and its last-sign state.
// privval.LoadFilePV exits the process on a bad file and LoadOrGenFilePV
// would silently make a new key, so neither is used.
func loadFilePV(c *cfg.Config) (*privval.FilePV, error) {
	keyFile, stateFile := c.PrivValidatorKeyFile(), c.PrivValidatorStateFile()
	key, err := readValidatorKey(keyFile)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(stateFile)
	if err != nil {
		// Starting from an empty state could sign twice at one height.
		return nil, fmt.Errorf("validator sign state: %w", err)
	}
	var state privval.FilePVLastSignState
	if err := cmtjson.Unmarshal(b, &state); err != nil {
		return nil, fmt.Errorf("validator sign state %s: %w", stateFile, err)
	}
	pv := privval.NewFilePV(key.PrivKey, keyFile, stateFile)
	// Copy field by field: the state remembers its file in an unexported field.
	pv.LastSignState.Height = state.Height
	pv.LastSignState.Round = state.Round
	pv.LastSignState.Step = state.Step
	pv.LastSignState.Signature = state.Signature
	pv.LastSignState.SignBytes = state.SignBytes
	return pv, nil
}
