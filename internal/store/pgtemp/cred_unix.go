//go:build unix

package pgtemp

import (
	"errors"
	"fmt"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
)

// credential is the user the server runs as when the caller is root.
type credential struct{ uid, gid int }

func (c *credential) apply(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(c.uid), Gid: uint32(c.gid), Groups: []uint32{}}}
}

// unprivileged is the user "nobody", which every Debian system has.
func unprivileged() (*credential, error) {
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, fmt.Errorf("pgtemp: running as root and no user %q to run PostgreSQL as: %w", "nobody", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("pgtemp: user nobody: %w", err)
	}
	return &credential{uid: uid, gid: gid}, nil
}
