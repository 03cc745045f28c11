//go:build !unix

package pgtemp

import (
	"errors"
	"os/exec"
)

type credential struct{ uid, gid int }

func (c *credential) apply(*exec.Cmd) {}

func unprivileged() (*credential, error) {
	return nil, errors.New("pgtemp: cannot run PostgreSQL as another user on this system")
}
