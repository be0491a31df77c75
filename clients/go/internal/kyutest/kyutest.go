// Package kyutest starts a real `kyu serve` on a free loopback port in a temporary
// directory, so the client's tests, benchmark and examples talk to the actual server
// (nothing mocked). The binary is $KYU_BIN, else the repository's cargo debug build:
// target/debug/kyu, or $CARGO_TARGET_DIR/debug/kyu when CARGO_TARGET_DIR is set.
package kyutest

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Options say how to start kyu.
type Options struct {
	Config string   // TOML written to a file passed with --config ("": none)
	Env    []string // extra KEY=VALUE entries (e.g. KYU_NODE_DEAD_AFTER=2s)
}

// Server is one running kyu.
type Server struct {
	URL    string // http://127.0.0.1:PORT
	Dir    string // its working directory (kyu.db, kyu.log)
	cmd    *exec.Cmd
	exited chan error // cmd.Wait's answer
	own    bool       // Dir was made by Start
}

// Bin is the kyu binary the tests run.
func Bin() string {
	if b := os.Getenv("KYU_BIN"); b != "" {
		return b
	}
	_, file, _, _ := runtime.Caller(0) // clients/go/internal/kyutest/kyutest.go
	repo := filepath.Join(filepath.Dir(file), "..", "..", "..", "..")
	target := os.Getenv("CARGO_TARGET_DIR")
	if target == "" {
		target = "target"
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(repo, target)
	}
	return filepath.Join(target, "debug", "kyu")
}

// inherited settings that would point a test kyu at something else than its temp dir
var stripped = []string{"DATABASE_URL=", "KYU_DATABASE_URL=", "KYU_CONFIG=", "KYU_BIND=", "KYU_API_TOKENS=", "REDIS_URL="}

// Start runs `kyu serve` and returns once it answers /readyz.
func Start(o Options) (*Server, error) {
	dir, err := os.MkdirTemp("", "kyu-go-test-")
	if err != nil {
		return nil, err
	}
	s, err := start(dir, o)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.own = true
	return s, nil
}

func start(dir string, o Options) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	args := []string{"serve", "--bind", fmt.Sprintf("127.0.0.1:%d", port)}
	if o.Config != "" {
		path := filepath.Join(dir, "kyu.toml")
		if err := os.WriteFile(path, []byte(o.Config), 0o600); err != nil {
			return nil, err
		}
		args = append(args, "--config", path)
	}
	logf, err := os.Create(filepath.Join(dir, "kyu.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(Bin(), args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, logf, logf
	cmd.Env = append(filterEnv(os.Environ()), "RUST_LOG=warn")
	cmd.Env = append(cmd.Env, o.Env...)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", Bin(), err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	s := &Server{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Dir: dir, cmd: cmd, exited: exited}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("kyu exited (%v):\n%s", err, s.Log())
		default:
		}
		if resp, err := http.Get(s.URL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-exited
	return nil, fmt.Errorf("kyu not ready after 30s:\n%s", s.Log())
}

// Log is what kyu printed so far (for failure messages).
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "kyu.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(bytes.TrimSpace(b))
}

// Close stops kyu (SIGTERM, then SIGKILL after 5s) and removes its directory.
func (s *Server) Close() error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	if s.own {
		return os.RemoveAll(s.Dir)
	}
	return nil
}

func filterEnv(env []string) []string {
	out := env[:0:0]
next:
	for _, kv := range env {
		for _, p := range stripped {
			if strings.HasPrefix(kv, p) {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
