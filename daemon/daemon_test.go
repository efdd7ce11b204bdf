package daemon

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestDefaultSocket(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1234")
	if got := DefaultSocket(); got != "/run/user/1234/subinterp.sock" {
		t.Errorf("with XDG_RUNTIME_DIR: %s", got)
	}
	t.Setenv("XDG_RUNTIME_DIR", "")
	want := filepath.Join("/tmp", "subinterp-"+strconv.Itoa(os.Getuid()), "subinterp.sock")
	if got := DefaultSocket(); got != want {
		t.Errorf("without XDG_RUNTIME_DIR: %s, want %s", got, want)
	}
}

// TestConfigNotMutated: defaults go into a copy.
func TestConfigNotMutated(t *testing.T) {
	cfg := Config{AllowUIDs: []int{5}}
	d := cfg.withDefaults()
	d.AllowUIDs[0] = 6
	if cfg.Socket != "" || cfg.Logger != nil || cfg.AllowUIDs[0] != 5 {
		t.Errorf("withDefaults changed the caller's Config: %+v", cfg)
	}
}

// TestListenRefusals: bad TCP settings and unusable socket paths fail at
// once, leaving nothing behind.
func TestListenRefusals(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	empty := filepath.Join(dir, "empty")
	_ = os.WriteFile(token, []byte("t\n"), 0o600)
	_ = os.WriteFile(empty, []byte(" \n"), 0o600)
	tlsCfg := &tls.Config{}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"TCP without TLS", Config{Listen: "127.0.0.1:0", TokenFile: token}, "TLS"},
		{"TCP without a token", Config{Listen: "127.0.0.1:0", TLS: tlsCfg}, "token"},
		{"an empty token", Config{Listen: "127.0.0.1:0", TLS: tlsCfg, TokenFile: empty}, "empty"},
		{"a missing token file", Config{Listen: "127.0.0.1:0", TLS: tlsCfg, TokenFile: filepath.Join(dir, "none")}, "token"},
		{"a socket path too long to connect to", Config{Socket: filepath.Join(dir, strings.Repeat("s", 120)+".sock")}, "at most"},
	} {
		if tc.cfg.Socket == "" {
			tc.cfg.Socket = filepath.Join(dir, "s.sock")
		}
		_, err := Listen(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error about %s", tc.name, err, tc.want)
		}
		if _, err := os.Stat(tc.cfg.Socket); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: a socket was left behind", tc.name)
		}
	}
}

// TestSocketCreation: the socket gets its mode whatever the umask, a live
// one is not replaced, a stale one is.
func TestSocketCreation(t *testing.T) {
	dir, err := os.MkdirTemp("", "dt")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "s.sock")
	log := hclog.NewNullLogger()
	l, fi, err := listenUnix(path, 0o600, log)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("mode %v", fi.Mode())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the directory holds %d entries, want only the socket", len(entries))
	}
	if _, _, err := listenUnix(path, 0o600, log); !errors.Is(err, ErrAlreadyServing) {
		t.Errorf("over a live socket: %v", err)
	}
	l.Close()
	l2, _, err := listenUnix(path, 0o600, log)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Errorf("the new socket does not answer: %v", err)
	} else {
		c.Close()
	}
	defer l2.Close()
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	otherInfo, _ := os.Stat(other)
	removeSocket(path, otherInfo)
	if _, err := os.Stat(path); err != nil {
		t.Errorf("removeSocket removed a socket that was not its own")
	}
}
