package keys

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// keyFile is the on-disk form of a private key: JSON so that a person can see
// which public key a file holds without tools.
type keyFile struct {
	Type      string    `json:"type"`
	PublicKey PublicKey `json:"public_key"`
	Seed      string    `json:"seed"`
}

const keyFileType = "ed25519"

// ErrInsecureKeyFile is returned when a key file can be read by group or
// others: such a key must be considered leaked, so it is refused rather than
// silently fixed.
var ErrInsecureKeyFile = errors.New("key file is readable by group or others (want mode 0600)")

// Save writes k to path with mode 0600, creating parent directories (0700).
// It refuses to overwrite an existing file.
func Save(path string, k PrivateKey) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create key directory: %w", err)
	}
	b, err := json.MarshalIndent(keyFile{Type: keyFileType, PublicKey: k.Public(), Seed: hex.EncodeToString(k.Seed())}, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync key file %s: %w", path, err)
	}
	return f.Close()
}

// Load reads a key file written by Save.
func Load(path string) (PrivateKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return PrivateKey{}, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return PrivateKey{}, fmt.Errorf("%s (mode %#o): %w", path, st.Mode().Perm(), ErrInsecureKeyFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return PrivateKey{}, err
	}
	var kf keyFile
	if err := json.Unmarshal(b, &kf); err != nil {
		return PrivateKey{}, fmt.Errorf("key file %s: not a key file: %w", path, err)
	}
	if kf.Type != keyFileType {
		return PrivateKey{}, fmt.Errorf("key file %s: unsupported key type %q", path, kf.Type)
	}
	seed, err := hex.DecodeString(kf.Seed)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("key file %s: seed: %w", path, err)
	}
	k, err := FromSeed(seed)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("key file %s: %w", path, err)
	}
	if k.Public() != kf.PublicKey {
		return PrivateKey{}, fmt.Errorf("key file %s: public key does not match the seed", path)
	}
	return k, nil
}

// LoadOrCreate loads the key at path, or generates and saves a new one when
// the file does not exist. created tells which happened.
func LoadOrCreate(path string) (k PrivateKey, created bool, err error) {
	k, err = Load(path)
	if err == nil {
		return k, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return PrivateKey{}, false, err
	}
	if k, err = Generate(); err != nil {
		return PrivateKey{}, false, err
	}
	if err := Save(path, k); err != nil {
		return PrivateKey{}, false, err
	}
	return k, true, nil
}
