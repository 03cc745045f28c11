package chain

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	cfg "github.com/cometbft/cometbft/config"
	"github.com/cometbft/cometbft/crypto"
	"github.com/cometbft/cometbft/crypto/ed25519"
	cmtjson "github.com/cometbft/cometbft/libs/json"
	"github.com/cometbft/cometbft/p2p"
	"github.com/cometbft/cometbft/privval"
	"github.com/cometbft/cometbft/types"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
)

// Sizes every home is configured with. Receipt batches are ~1 MiB
// transactions, so the CometBFT defaults (1 MiB per tx, 4 MiB per block)
// would refuse the first large batch.
const (
	// MaxTxBytes is the largest transaction the mempool accepts.
	MaxTxBytes = 8 << 20
	// MaxTxsBytes bounds the whole mempool.
	MaxTxsBytes = 256 << 20
	// MaxBlockBytes is the consensus block size limit written to genesis.
	MaxBlockBytes = 32 << 20
	// rpcMaxBodyBytes lets broadcast_tx carry a MaxTxBytes transaction: the
	// JSON-RPC body holds it base64-encoded (4/3 of its size) plus framing.
	rpcMaxBodyBytes = 2 * MaxTxBytes
	// p2pRate is each peer connection's send and receive budget, bytes/s.
	// The default 5 MB/s takes seconds to move one full block to a peer,
	// longer than timeout_propose.
	p2pRate = 64 << 20
	// dbBackend: pebbledb is CometBFT v1's default and what it is tested
	// with; it is pure Go, like goleveldb, which cometbft-db marks as on its
	// way out. cleveldb and rocksdb would need cgo.
	dbBackend = "pebbledb"
	// validatorPower is each genesis validator's voting power: equal for
	// all, so any 2f+1 of 3f+1 validators make progress.
	validatorPower = 10
	// emptyBlocksInterval bounds how long a transaction can wait for a
	// block (see newConfig); an idle chain makes one empty block per
	// interval.
	emptyBlocksInterval = 10 * time.Second
)

// NetworkOptions tunes InitNetwork.
type NetworkOptions struct {
	// BasePort, when non-zero, gives node i the P2P port BasePort+2i and the
	// RPC port BasePort+2i+1; zero picks free loopback ports at init time.
	BasePort int
	// GenesisTime is the chain's genesis time; zero means now. CometBFT
	// refuses to make blocks before it.
	GenesisTime time.Time
}

// loopback listen address with a port; port 0 lets StartNode choose.
func loopback(port int) string {
	return "tcp://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// newConfig is the one place that says how an idlegrid CometBFT home is
// configured. Consensus timeouts are short because peers sit on loopback or a
// LAN: timeout_propose bounds how long a round waits for a proposer that is
// down. timeout_commit is 0: CometBFT v1.0.1 has no next_block_delay yet (it
// came with v1.1), and in v1.0 a zero timeout_commit replaces the deprecated
// skip_timeout_commit, so the next height starts as soon as the block is
// committed instead of sleeping a fixed second. Empty blocks are off: the
// ledger only needs a block when there is a transaction (CometBFT still makes
// one more block after each state change, to carry the new app hash), except
// one per emptyBlocksInterval.
func newConfig(home, moniker string, p2pPort, rpcPort int, peers []string) *cfg.Config {
	c := cfg.DefaultConfig()
	c.SetRoot(home)
	c.Moniker = moniker
	c.DBBackend = dbBackend
	c.ProxyApp = "" // the application runs in-process, see StartNode

	c.RPC.ListenAddress = loopback(rpcPort)
	c.RPC.MaxBodyBytes = rpcMaxBodyBytes

	c.P2P.ListenAddress = loopback(p2pPort)
	c.P2P.PersistentPeers = strings.Join(peers, ",")
	c.P2P.AllowDuplicateIP = true // every peer is 127.0.0.1
	c.P2P.AddrBookStrict = false  // accept non-routable (loopback) addresses
	c.P2P.SendRate = p2pRate
	c.P2P.RecvRate = p2pRate
	// Large packets cut the per-packet cost of moving ~1 MiB txs and blocks
	// (the default is 1 KiB). A node refuses packets above its own limit, so
	// every validator of a network must use the same value.
	c.P2P.MaxPacketMsgPayloadSize = 64 << 10

	c.Mempool.MaxTxBytes = MaxTxBytes
	c.Mempool.MaxTxsBytes = MaxTxsBytes

	c.Consensus.TimeoutPropose = time.Second
	c.Consensus.TimeoutProposeDelta = time.Second
	c.Consensus.TimeoutPrevote = 500 * time.Millisecond
	c.Consensus.TimeoutPrevoteDelta = 250 * time.Millisecond
	c.Consensus.TimeoutPrecommit = 500 * time.Millisecond
	c.Consensus.TimeoutPrecommitDelta = 250 * time.Millisecond
	c.Consensus.TimeoutCommit = 0
	c.Consensus.CreateEmptyBlocks = false
	// Blocks wait for transactions, but at most this long: a transaction
	// that arrives while a block commits can miss the mempool's "transactions
	// available" signal (tendermint/tendermint#2961) and would otherwise
	// wait for the next transaction; with the interval the next (possibly
	// empty) block comes anyway.
	c.Consensus.CreateEmptyBlocksInterval = emptyBlocksInterval
	c.Consensus.PeerGossipSleepDuration = 50 * time.Millisecond

	c.TxIndex.Indexer = "kv"
	return c
}

// newGenesis returns the genesis document for validators and appState.
func newGenesis(chainID string, genesisTime time.Time, vals []types.GenesisValidator, appState json.RawMessage) (*types.GenesisDoc, error) {
	params := types.DefaultConsensusParams()
	params.Block.MaxBytes = MaxBlockBytes
	params.Block.MaxGas = -1 // the ledger does not meter gas
	if genesisTime.IsZero() {
		genesisTime = time.Now()
	}
	doc := &types.GenesisDoc{
		GenesisTime:     genesisTime.UTC().Truncate(time.Millisecond),
		ChainID:         chainID,
		InitialHeight:   1,
		ConsensusParams: params,
		Validators:      vals,
		AppState:        appState,
	}
	if err := doc.ValidateAndComplete(); err != nil {
		return nil, fmt.Errorf("genesis: %w", err)
	}
	return doc, nil
}

// checkInit rejects a chain id or app state that CometBFT would only
// refuse after keys were written, or when the node starts.
func checkInit(chainID string, appState json.RawMessage) error {
	if chainID == "" || len(chainID) > types.MaxChainIDLen {
		return fmt.Errorf("chain id %q: want 1 to %d characters", chainID, types.MaxChainIDLen)
	}
	if len(appState) > 0 && !json.Valid(appState) {
		return errors.New("app state is not valid JSON")
	}
	return nil
}

// InitSingle prepares home for a one-validator chain on loopback, with RPC
// and P2P on ports StartNode picks when it starts. It only creates what is
// missing (keys, genesis, config.toml), so an existing home is left as is and
// `idlegrid up` restarts keep their chain; appState (GenesisDoc.AppState)
// is used only when the genesis is written.
func InitSingle(home, chainID string, appState json.RawMessage) error {
	if err := checkInit(chainID, appState); err != nil {
		return err
	}
	c := newConfig(home, "validator", 0, 0, nil)
	if err := makeHomeDirs(c); err != nil {
		return err
	}
	pub, err := ensureValidatorKey(c)
	if err != nil {
		return err
	}
	if _, err := p2p.LoadOrGenNodeKey(c.NodeKeyFile()); err != nil {
		return fmt.Errorf("node key %s: %w", c.NodeKeyFile(), err)
	}
	if !exists(c.GenesisFile()) {
		reward, err := rewardAccount(home)
		if err != nil {
			return err
		}
		if appState, err = withValidators(appState, []ledger.Validator{{ConsensusKey: consensusKey(pub), Account: reward}}); err != nil {
			return err
		}
		doc, err := newGenesis(chainID, time.Time{}, []types.GenesisValidator{{PubKey: pub, Power: validatorPower, Name: c.Moniker}}, appState)
		if err != nil {
			return err
		}
		if err := writeJSONFile(c.GenesisFile(), doc, 0o644); err != nil {
			return err
		}
	}
	if !exists(configFile(home)) {
		return writeConfig(c)
	}
	return nil
}

// InitNetwork writes n validator homes out/node0 … out/node{n-1}: keys, one
// genesis naming all n validators with equal power, and a config.toml with
// loopback P2P and RPC ports and persistent_peers wired to every other node.
// It returns the homes and refuses to overwrite an existing one; on error
// it removes the homes it had begun.
func InitNetwork(out string, n int, chainID string, appState json.RawMessage, opts NetworkOptions) (homes []string, err error) {
	if n < 1 {
		return nil, fmt.Errorf("network needs at least one validator, got %d", n)
	}
	if err := checkInit(chainID, appState); err != nil {
		return nil, err
	}
	homes = make([]string, n)
	for i := range homes {
		homes[i] = filepath.Join(out, "node"+strconv.Itoa(i))
		if exists(homes[i]) {
			return nil, fmt.Errorf("%s already exists; remove it or pick another --out", homes[i])
		}
	}
	defer func() {
		if err != nil {
			for _, h := range homes {
				os.RemoveAll(h)
			}
		}
	}()
	ports, err := networkPorts(n, opts.BasePort)
	if err != nil {
		return nil, err
	}
	vals := make([]types.GenesisValidator, n)
	rewards := make([]ledger.Validator, n)
	peers := make([]string, n)
	for i, home := range homes {
		c := newConfig(home, "node"+strconv.Itoa(i), 0, 0, nil)
		if err := makeHomeDirs(c); err != nil {
			return nil, err
		}
		pub, err := ensureValidatorKey(c)
		if err != nil {
			return nil, err
		}
		nk, err := p2p.LoadOrGenNodeKey(c.NodeKeyFile())
		if err != nil {
			return nil, fmt.Errorf("node key %s: %w", c.NodeKeyFile(), err)
		}
		vals[i] = types.GenesisValidator{PubKey: pub, Power: validatorPower, Name: c.Moniker}
		reward, err := rewardAccount(home)
		if err != nil {
			return nil, err
		}
		rewards[i] = ledger.Validator{ConsensusKey: consensusKey(pub), Account: reward}
		peers[i] = p2p.IDAddressString(nk.ID(), net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2*i])))
	}
	if appState, err = withValidators(appState, rewards); err != nil {
		return nil, err
	}
	doc, err := newGenesis(chainID, opts.GenesisTime, vals, appState)
	if err != nil {
		return nil, err
	}
	for i, home := range homes {
		others := make([]string, 0, n-1)
		for j, p := range peers {
			if j != i {
				others = append(others, p)
			}
		}
		c := newConfig(home, "node"+strconv.Itoa(i), ports[2*i], ports[2*i+1], others)
		if err := writeJSONFile(c.GenesisFile(), doc, 0o644); err != nil {
			return nil, err
		}
		if err := writeConfig(c); err != nil {
			return nil, err
		}
	}
	return homes, nil
}

// networkPorts returns P2P and RPC ports for n nodes: ports[2i] and
// ports[2i+1]. Free ports are all held open until every one is chosen so
// that no two nodes get the same port; another process may still take one
// before the node starts, which a test then sees as a failed start.
func networkPorts(n, base int) ([]int, error) {
	ports := make([]int, 2*n)
	if base > 0 {
		if base+2*n-1 > 65535 {
			return nil, fmt.Errorf("base port %d leaves no room for %d nodes", base, n)
		}
		for i := range ports {
			ports[i] = base + i
		}
		return ports, nil
	}
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// configFile is the path of home's config.toml.
func configFile(home string) string {
	return filepath.Join(home, cfg.DefaultConfigDir, cfg.DefaultConfigFileName)
}

func makeHomeDirs(c *cfg.Config) error {
	for _, d := range []string{filepath.Join(c.RootDir, cfg.DefaultConfigDir), c.DBDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	return nil
}

// ensureValidatorKey returns the public key in the home's validator key
// file, creating the key and an empty sign state if there is no key yet. An
// existing key without a sign state is left alone: starting from an empty
// state could sign twice at one height, so StartNode refuses it.
func ensureValidatorKey(c *cfg.Config) (crypto.PubKey, error) {
	keyFile, stateFile := c.PrivValidatorKeyFile(), c.PrivValidatorStateFile()
	if exists(keyFile) {
		key, err := readValidatorKey(keyFile)
		if err != nil {
			return nil, err
		}
		return key.PubKey, nil
	}
	pv := privval.NewFilePV(ed25519.GenPrivKey(), keyFile, stateFile)
	if err := os.MkdirAll(filepath.Dir(stateFile), 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", filepath.Dir(stateFile), err)
	}
	// The state first: a key file is what marks the validator as created.
	if err := writeJSONFile(stateFile, pv.LastSignState, 0o600); err != nil {
		return nil, err
	}
	if err := writeJSONFile(keyFile, pv.Key, 0o600); err != nil {
		return nil, err
	}
	return pv.Key.PubKey, nil
}

// RewardKeyFile is the key of a validator's ledger account, created with
// its home: epoch rewards for the validator go there, and it approves
// parameter changes.
func RewardKeyFile(home string) string { return filepath.Join(home, "config", "reward.key") }

// rewardAccount loads or creates the validator's reward key and returns
// its address.
func rewardAccount(home string) (keys.Address, error) {
	k, _, err := keys.LoadOrCreate(RewardKeyFile(home))
	if err != nil {
		return "", fmt.Errorf("validator reward key: %w", err)
	}
	return k.Public().Address(), nil
}

func consensusKey(pub crypto.PubKey) keys.PublicKey {
	var k keys.PublicKey
	copy(k[:], pub.Bytes())
	return k
}

// withValidators names the validators' reward accounts in the ledger
// genesis. An app state that already lists validators is left as it is,
// and so is one that is no ledger genesis (the application it is for
// judges it when the chain starts).
func withValidators(appState json.RawMessage, vals []ledger.Validator) (json.RawMessage, error) {
	g, err := ledger.ParseGenesis(appState)
	if err != nil || len(g.Validators) > 0 {
		return appState, nil
	}
	g.Validators = vals
	return json.Marshal(g)
}

// readValidatorKey reads a privval key file. privval.LoadFilePV would exit
// the process on a bad file, so it is not used.
func readValidatorKey(keyFile string) (privval.FilePVKey, error) {
	var key privval.FilePVKey
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return key, fmt.Errorf("validator key: %w", err)
	}
	if err := cmtjson.Unmarshal(b, &key); err != nil {
		return key, fmt.Errorf("validator key %s: %w", keyFile, err)
	}
	if key.PrivKey == nil {
		return key, fmt.Errorf("validator key %s: no private key", keyFile)
	}
	key.PubKey = key.PrivKey.PubKey()
	key.Address = key.PubKey.Address()
	return key, nil
}

// writeConfig renders c as home/config/config.toml with CometBFT's own
// template, so every option is present and documented in the file.
func writeConfig(c *cfg.Config) (err error) {
	path := configFile(c.RootDir)
	tmp := path + ".tmp"
	defer func() {
		// WriteConfigFile panics on a write error instead of returning it.
		if r := recover(); r != nil {
			err = fmt.Errorf("write %s: %v", path, r)
		}
	}()
	cfg.WriteConfigFile(tmp, c)
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// writeJSONFile writes v in CometBFT's JSON encoding (which knows its key
// types) atomically: a crash leaves the old file or the new one, never half.
func writeJSONFile(path string, v any, perm fs.FileMode) error {
	b, err := cmtjson.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name()) // a no-op once renamed
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(f.Name(), perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
