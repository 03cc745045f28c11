// Guard tests for the whole repository (run with `go test .` at the module
// root): every package is documented, the packages every role must agree on
// stay pure, the provider agent stays light, and no model file or machine
// path slips into the tree. They read the tree through the go command, so
// they see exactly what a build sees.
package idlegrid_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/idlegrid/idlegrid"

// basePackages are the parts every role must agree on byte for byte
// (DESIGN.md, "Packages"): they import nothing of the project but each other
// and touch no network, clock or environment.
var basePackages = []string{"internal/keys", "internal/money", "internal/receipt", "internal/protocol", "internal/ledger"}

// forbiddenDeps may not be linked into a base package, even indirectly:
// networking, subprocesses, signals and plugins have no place in code whose
// output must be the same on every machine.
var forbiddenDeps = []string{"net", "net/http", "crypto/tls", "os/exec", "os/signal", "plugin"}

// forbiddenImports may not be imported directly by a base package. They are
// linked anyway (fmt imports os, os imports time), so only direct imports can
// be checked: a clock, randomness, the file system and the environment make
// results depend on where and when the code runs.
var forbiddenImports = []string{"os", "time", "syscall", "crypto/rand", "math/rand", "math/rand/v2", "io/ioutil", "os/user"}

// allowedImports are the documented exceptions to forbiddenImports.
var allowedImports = map[string][]string{
	// Key files (keys.Save/Load) and key generation (keys.Generate) are part
	// of the package by design; TestBasePackagesReadNoEnvironment still
	// keeps it from reading the environment.
	"internal/keys": {"os", "crypto/rand"},
}

// listedPackage is the part of `go list -json` output these tests use.
type listedPackage struct {
	ImportPath string
	Dir        string
	Name       string
	Doc        string
	Standard   bool
	GoFiles    []string
	CgoFiles   []string
	Imports    []string
	Deps       []string
	Error      *struct{ Err string }
	DepsErrors []*struct{ Err string }
}

// goCommand runs the go command in the module root and returns its stdout.
// It never reaches the network: the guard tests must pass offline and must
// not fetch anything.
func goCommand(t *testing.T, args ...string) []byte {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the repo guard tests need the go command in PATH: %v", err)
	}
	cmd := exec.CommandContext(t.Context(), gobin, args...)
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=readonly")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

// goList runs `go list -e -json` with args and decodes its stream of objects.
func goList(t *testing.T, args ...string) []*listedPackage {
	t.Helper()
	out := goCommand(t, append([]string{"list", "-e", "-json"}, args...)...)
	var pkgs []*listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		p := new(listedPackage)
		if err := dec.Decode(p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func rel(importPath string) string { return strings.TrimPrefix(importPath, module+"/") }

func isModulePackage(importPath string) bool {
	return importPath == module || strings.HasPrefix(importPath, module+"/")
}

// hasGoPackage reports whether the module has a directory at relDir holding at
// least one non-test Go file.
func hasGoPackage(relDir string) bool {
	entries, err := os.ReadDir(relDir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if n := e.Name(); !e.IsDir() && strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
			return true
		}
	}
	return false
}

func TestPackagesHaveDocComments(t *testing.T) {
	t.Parallel()
	checked := 0
	for _, p := range goList(t, "./cmd/...", "./internal/...") {
		if slices.Contains(strings.Split(rel(p.ImportPath), "/"), "testdata") {
			continue
		}
		files := append(slices.Clone(p.GoFiles), p.CgoFiles...)
		if len(files) == 0 {
			// A directory of tests only, or one whose files were all
			// excluded: nothing to document yet.
			if p.Error != nil {
				t.Logf("%s: skipped: %s", rel(p.ImportPath), p.Error.Err)
			}
			continue
		}
		checked++
		// Read the comments ourselves rather than trust go list's Doc, so a
		// package that does not build yet (others are mid-change) is still
		// checked.
		fset := token.NewFileSet()
		var doc string
		for _, name := range files {
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Errorf("%s: %v", rel(p.ImportPath), err)
				continue
			}
			if f.Doc != nil {
				doc = f.Doc.Text()
				break
			}
		}
		switch {
		case doc == "":
			t.Errorf("%s: package has no doc comment (STYLE.md: every package has one)", p.ImportPath)
		case p.Name == "main":
			if !strings.HasPrefix(doc, "Command ") {
				t.Errorf("%s: command doc comment should start with \"Command \", got %q", p.ImportPath, firstLine(doc))
			}
		case !strings.HasPrefix(doc, "Package "+p.Name+" "):
			t.Errorf("%s: doc comment should start with \"Package %s \", got %q", p.ImportPath, p.Name, firstLine(doc))
		}
	}
	if checked == 0 {
		t.Fatal("no package was checked: is the test running in the module root?")
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// existingBase returns the base packages present in the tree (relative
// paths), logging the ones that do not exist yet.
func existingBase(t *testing.T) []string {
	var present []string
	for _, b := range basePackages {
		if hasGoPackage(b) {
			present = append(present, b)
		} else {
			t.Logf("%s: no such package yet; not checked", b)
		}
	}
	return present
}

func TestBasePackagesArePure(t *testing.T) {
	t.Parallel()
	base := existingBase(t)
	args := []string{"-deps"}
	for _, b := range base {
		args = append(args, "./"+b)
	}
	all := map[string]*listedPackage{}
	for _, p := range goList(t, args...) {
		all[p.ImportPath] = p
	}
	allowedModule := map[string]bool{}
	for _, b := range basePackages {
		allowedModule[module+"/"+b] = true
	}
	for _, b := range base {
		p := all[module+"/"+b]
		if p == nil {
			t.Errorf("%s: missing from go list output", b)
			continue
		}
		if p.Error != nil {
			t.Errorf("%s: %s", b, p.Error.Err)
		}
		for _, e := range p.DepsErrors {
			t.Errorf("%s: dependency error: %s", b, e.Err)
		}
		for _, d := range p.Deps {
			switch {
			case isModulePackage(d) && !allowedModule[d]:
				t.Errorf("%s depends on %s: base packages import nothing of the project but each other", b, rel(d))
			case slices.Contains(forbiddenDeps, d):
				t.Errorf("%s links %s (through %s): base packages do no I/O beyond their inputs", b, d, strings.Join(importChain(all, p.ImportPath, d), " → "))
			case !isModulePackage(d) && all[d] != nil && !all[d].Standard:
				t.Logf("%s depends on third-party package %s", b, d)
			}
		}
		for _, imp := range p.Imports {
			if slices.Contains(forbiddenImports, imp) && !slices.Contains(allowedImports[b], imp) {
				t.Errorf("%s imports %s: base packages read no clock, randomness, file system or environment", b, imp)
			}
		}
	}
}

// importChain finds a path of imports from one package to another among the
// listed packages, to tell the reader where a forbidden dependency comes in.
func importChain(all map[string]*listedPackage, from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == to {
			var chain []string
			for p := cur; p != ""; p = prev[p] {
				chain = append(chain, rel(p))
			}
			slices.Reverse(chain)
			return chain
		}
		if p := all[cur]; p != nil {
			for _, imp := range p.Imports {
				if _, seen := prev[imp]; !seen {
					prev[imp] = cur
					queue = append(queue, imp)
				}
			}
		}
	}
	return []string{rel(from), "…", to}
}

// TestBasePackagesReadNoEnvironment covers what import lists cannot: keys
// may use the os package for key files, but no base package reads the
// environment or the clock through it.
func TestBasePackagesReadNoEnvironment(t *testing.T) {
	t.Parallel()
	forbidden := map[string]bool{"Getenv": true, "LookupEnv": true, "Environ": true, "ExpandEnv": true, "Setenv": true, "Unsetenv": true, "Clearenv": true, "Hostname": true, "Getwd": true}
	for _, b := range existingBase(t) {
		entries, err := os.ReadDir(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			name := e.Name()
			if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
				continue
			}
			path := filepath.Join(b, name)
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Errorf("%s: %v", path, err)
				continue
			}
			osName := ""
			for _, imp := range f.Imports {
				if p, _ := strconv.Unquote(imp.Path.Value); p == "os" {
					osName = "os"
					if imp.Name != nil {
						osName = imp.Name.Name
					}
				}
			}
			if osName == "" {
				continue
			}
			ast.Inspect(f, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == osName && forbidden[sel.Sel.Name] {
					t.Errorf("%s: calls os.%s: base packages take their inputs as arguments", fset.Position(sel.Pos()), sel.Sel.Name)
				}
				return true
			})
		}
	}
}

func TestProviderDoesNotLinkCometBFT(t *testing.T) {
	t.Parallel()
	if !hasGoPackage("internal/provider") {
		t.Skip("internal/provider does not exist yet")
	}
	pkgs := goList(t, "-deps", "./internal/provider")
	all := map[string]*listedPackage{}
	for _, p := range pkgs {
		all[p.ImportPath] = p
	}
	provider := all[module+"/internal/provider"]
	if provider == nil {
		t.Fatal("internal/provider missing from go list output")
	}
	for _, e := range provider.DepsErrors {
		t.Logf("internal/provider: dependency error (dependencies may be incomplete): %s", e.Err)
	}
	for _, d := range provider.Deps {
		if strings.HasPrefix(d, "github.com/cometbft/") || strings.HasPrefix(d, "github.com/tendermint/") {
			t.Errorf("the provider agent links %s (through %s): it must stay a small binary for home machines",
				d, strings.Join(importChain(all, provider.ImportPath, d), " → "))
		}
	}
}

// chainClients reach a ledger node only through its client,
// internal/chain/chainrpc: the gateway serves consumers and the web UI shows
// the ledger, and neither runs a node.
var chainClients = []string{"internal/gateway", "internal/web"}

// nodeDeps are what a node links and a client of one must not: the ABCI
// application and the node (internal/chain), the audit's replay, and
// CometBFT's node, consensus (internal since CometBFT v1), block sync,
// state sync, state and block store. CometBFT's p2p package is not among
// them: its RPC result types (rpc/core/types, which the HTTP client
// decodes into) import it.
var nodeDeps = []string{
	module + "/internal/chain",
	module + "/internal/chain/audit",
	"github.com/cometbft/cometbft/node",
	"github.com/cometbft/cometbft/internal/consensus",
	"github.com/cometbft/cometbft/internal/blocksync",
	"github.com/cometbft/cometbft/statesync",
	"github.com/cometbft/cometbft/state",
	"github.com/cometbft/cometbft/store",
}

// TestChainClientsLinkNoNode: the gateway and the web UI link the chain's
// RPC client, not the node (issue 18: they linked 108 CometBFT packages).
func TestChainClientsLinkNoNode(t *testing.T) {
	t.Parallel()
	var patterns []string
	for _, c := range chainClients {
		patterns = append(patterns, "./"+c+"/...")
	}
	all := map[string]*listedPackage{}
	for _, p := range goList(t, append([]string{"-deps"}, patterns...)...) {
		all[p.ImportPath] = p
	}
	checked := 0
	for path, p := range all {
		r := rel(path)
		if !isModulePackage(path) || !slices.ContainsFunc(chainClients, func(c string) bool { return r == c || strings.HasPrefix(r, c+"/") }) {
			continue
		}
		checked++
		for _, e := range p.DepsErrors {
			t.Logf("%s: dependency error (dependencies may be incomplete): %s", r, e.Err)
		}
		for _, d := range p.Deps {
			if slices.Contains(nodeDeps, d) {
				t.Errorf("%s links %s (through %s): a client of the chain uses internal/chain/chainrpc", r, d, strings.Join(importChain(all, path, d), " → "))
			}
		}
	}
	if checked < len(chainClients) {
		t.Fatalf("go list found %d of the packages under %v", checked, chainClients)
	}
}

// repoFiles lists the files that are or may become part of the repository:
// tracked files and untracked ones that are not ignored. Without git (an
// exported tree) it walks the directory instead.
func repoFiles(t *testing.T) []string {
	t.Helper()
	if _, err := os.Stat(".git"); err == nil {
		if gitbin, err := exec.LookPath("git"); err == nil {
			// Read-only: ls-files neither writes the index nor takes a lock.
			cmd := exec.CommandContext(t.Context(), gitbin, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
			out, err := cmd.Output()
			if err == nil {
				var files []string
				for f := range strings.SplitSeq(strings.TrimSuffix(string(out), "\x00"), "\x00") {
					if f != "" {
						files = append(files, filepath.FromSlash(f))
					}
				}
				return files
			}
			t.Logf("git ls-files failed (%v); walking the tree instead", err)
		}
	}
	var files []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestNoModelFiles(t *testing.T) {
	t.Parallel()
	files := repoFiles(t)
	if len(files) == 0 {
		t.Fatal("no files found: is the test running in the module root?")
	}
	for _, f := range files {
		if strings.EqualFold(filepath.Ext(f), ".gguf") {
			t.Errorf("%s: model weights do not belong in the repository (tests fetch or generate them)", f)
		}
	}
}

func TestNoMachinePaths(t *testing.T) {
	t.Parallel()
	// Built from pieces so that this file does not match itself.
	var needles []string
	for _, dir := range []string{"work", "root", "home"} {
		needles = append(needles, "/"+dir+"/")
	}
	checked := 0
	for _, f := range repoFiles(t) {
		if !strings.HasSuffix(f, ".go") {
			continue
		}
		b, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the working tree since it was listed
		} else if err != nil {
			t.Error(err)
			continue
		}
		checked++
		for i, line := range strings.Split(string(b), "\n") {
			for _, n := range needles {
				if strings.Contains(line, n) {
					t.Errorf("%s:%d: mentions a machine path (%q): %s", f, i+1, n, strings.TrimSpace(line))
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no Go file was checked")
	}
	t.Logf("checked %d Go files", checked)
}

// TestSecurityNamesRealTests: every test SECURITY.md names as the proof of
// a property exists (a trailing * names a family by prefix), so the threat
// model cannot cite a test that was renamed or removed.
func TestSecurityNamesRealTests(t *testing.T) {
	doc, err := os.ReadFile("SECURITY.md")
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]bool{}
	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			if fn, ok := decl.(*ast.FuncDecl); ok && fn.Recv == nil && strings.HasPrefix(fn.Name.Name, "Test") {
				defined[fn.Name.Name] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	named := 0
	for _, field := range strings.FieldsFunc(string(doc), func(r rune) bool { return r == '`' || r == ' ' || r == ',' || r == '\n' }) {
		name, _, _ := strings.Cut(field, "/") // a subtest names its test
		if !strings.HasPrefix(name, "Test") || len(name) < 5 || name[4] < 'A' || name[4] > 'Z' {
			continue
		}
		named++
		if prefix, family := strings.CutSuffix(name, "*"); family {
			if !slices.ContainsFunc(slices.Collect(maps.Keys(defined)), func(n string) bool { return strings.HasPrefix(n, prefix) }) {
				t.Errorf("SECURITY.md names tests %s, but no test starts with %s", name, prefix)
			}
		} else if !defined[name] {
			t.Errorf("SECURITY.md names %s, which is no test in the repository", name)
		}
	}
	if named < 20 {
		t.Errorf("SECURITY.md names %d tests: the parser missed them", named)
	}
}

// TestArchitectureDocNamesRealCode: docs/architecture.md stays true to the
// tree: every path it names in backticks exists (a bare file name counts
// when some package has it), every package it names is a package, and
// every package of the module is in its package table.
func TestArchitectureDocNamesRealCode(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]bool{}
	for _, f := range repoFiles(t) {
		files[filepath.Base(f)] = true
	}
	named := map[string]bool{}
	parts := strings.Split(string(doc), "`")
	for i := 1; i < len(parts); i += 2 {
		p := parts[i]
		switch {
		case strings.HasPrefix(p, "internal/") || strings.HasPrefix(p, "cmd/"):
			if _, err := os.Stat(p); err != nil {
				t.Errorf("docs/architecture.md names %s, which does not exist", p)
			}
			if !strings.HasSuffix(p, ".go") {
				named[p] = true
			}
		case strings.HasSuffix(p, ".go") && !strings.Contains(p, " "):
			if !files[p] {
				t.Errorf("docs/architecture.md names %s, which no package has", p)
			}
		}
	}
	for _, p := range goList(t, "./...") {
		r := rel(p.ImportPath)
		if r == module || strings.HasPrefix(r, "test/") {
			continue
		}
		if !named[r] {
			t.Errorf("package %s is not in docs/architecture.md", r)
		}
	}
}
