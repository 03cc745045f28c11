// Package pgtemp starts a throwaway PostgreSQL server: initdb into a fresh
// temporary directory, pg_ctl start on a loopback port, and on Stop the
// server is stopped and the directory removed. Tests use it to run the
// store against a real PostgreSQL, and `idlegrid bench scale` to share one
// database between gateways, without any installed service or password.
//
// The binaries are looked up on PATH and under /usr/lib/postgresql/*/bin
// (where Debian's postgresql package puts them). PostgreSQL refuses to run
// as root, so when the caller is root the server runs as the unprivileged
// user "nobody" in a directory that user owns.
package pgtemp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoPostgres means no PostgreSQL binaries were found; callers (tests)
// skip rather than fail.
var ErrNoPostgres = errors.New("PostgreSQL binaries (initdb, pg_ctl) not found on PATH or under /usr/lib/postgresql/*/bin; install Debian's postgresql package")

// Server is a running throwaway PostgreSQL.
type Server struct {
	// URL connects as the superuser to the "postgres" database.
	URL string
	// Port is the loopback port the server listens on.
	Port int

	bin  string // directory of pg_ctl
	dir  string // removed by Stop
	data string
	cred *credential // nil: run as the caller
	log  string
}

// FindBin returns the directory holding initdb and pg_ctl, or ErrNoPostgres.
func FindBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	// Newest major version first.
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return majorOf(dirs[i]) > majorOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", ErrNoPostgres
}

func majorOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// Start creates and starts a server. Stop it with Stop.
func Start(ctx context.Context) (*Server, error) {
	bin, err := FindBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "idlegrid-pg-")
	if err != nil {
		return nil, fmt.Errorf("pgtemp: %w", err)
	}
	s := &Server{bin: bin, dir: dir, data: filepath.Join(dir, "data"), log: filepath.Join(dir, "server.log")}
	if os.Geteuid() == 0 {
		// initdb and postgres refuse to run as root.
		cred, err := unprivileged()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		s.cred = cred
		if err := os.Chown(dir, cred.uid, cred.gid); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pgtemp: give %s to the server's user: %w", dir, err)
		}
	}
	if err := s.run(ctx, "initdb", "-D", s.data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// A port picked by the kernel, then given to the server: another
	// process could take it in between, so a failed start is retried.
	for attempt := 0; ; attempt++ {
		s.Port, err = freePort()
		if err == nil {
			err = s.start(ctx)
		}
		if err == nil {
			break
		}
		if attempt == 4 || ctx.Err() != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	s.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.Port)
	return s, nil
}

func (s *Server) start(ctx context.Context) error {
	// Loopback TCP only (no Unix socket), fsync off: a test database that
	// is thrown away needs no durability, and the machine is shared.
	opts := fmt.Sprintf("-h 127.0.0.1 -p %d -k '' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", s.Port)
	return s.run(ctx, "pg_ctl", "-D", s.data, "-l", s.log, "-w", "-t", "60", "-o", opts, "start")
}

// Stop stops the server and removes its directory.
func (s *Server) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := s.run(ctx, "pg_ctl", "-D", s.data, "-m", "immediate", "-w", "stop")
	return errors.Join(err, os.RemoveAll(s.dir))
}

// CreateDatabase creates an empty database and returns its URL. name must
// be a plain identifier (letters, digits, underscores).
func (s *Server) CreateDatabase(ctx context.Context, name string) (string, error) {
	if name == "" || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
		return "", fmt.Errorf("pgtemp: database name %q: want lower-case letters, digits and underscores", name)
	}
	conn, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		return "", fmt.Errorf("pgtemp: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("pgtemp: create database %s: %w", name, err)
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, name), nil
}

func (s *Server) run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	if s.cred != nil {
		s.cred.apply(cmd)
		cmd.Env = append(cmd.Env, "HOME="+s.dir)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if b, rerr := os.ReadFile(s.log); rerr == nil && name == "pg_ctl" {
			msg += "\n" + lastLines(string(b), 10)
		}
		return fmt.Errorf("pgtemp: %s: %w: %s", name, err, msg)
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtemp: pick a port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
