// etcd-shim is the `etcd` that Kubernetes' integration tests find on the PATH when they start
// a server of their own (test/integration/framework.RunCustomEtcd, used by
// TestWatchCacheUpdatedByEtcd and TestReflectorWatchListFallback). Those tests ask for a
// client URL on a unix socket, which Bramble does not serve; the shim starts the server in
// BRAMBLE_K8S_SERVER_BIN (bramble, or etcd 3.6 for the reference run, so both get the same
// treatment) on a free loopback TCP port with the tests' other flags, and forwards the unix
// socket's connections to it. SIGTERM/SIGINT are passed on; the shim exits with the server.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail("probe a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "etcd-shim: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	server := os.Getenv("BRAMBLE_K8S_SERVER_BIN")
	if server == "" {
		fail("BRAMBLE_K8S_SERVER_BIN is not set")
	}
	// The flags, as `--name value` pairs or `--name=value`, with Go's single dash allowed.
	flags := map[string]string{}
	var order []string
	args := os.Args[1:]
	for i := 0; i < len(args); i++ {
		a := strings.TrimLeft(args[i], "-")
		name, value, ok := strings.Cut(a, "=")
		if !ok {
			if i+1 >= len(args) {
				fail("flag %s has no value", args[i])
			}
			value = args[i+1]
			i++
		}
		if _, seen := flags[name]; !seen {
			order = append(order, name)
		}
		flags[name] = value
	}
	socket, ok := strings.CutPrefix(flags["listen-client-urls"], "unix://")
	if !ok {
		fail("expected --listen-client-urls unix://PATH, got %q", flags["listen-client-urls"])
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", freePort())
	peer := fmt.Sprintf("http://127.0.0.1:%d", freePort())
	flags["listen-client-urls"] = client
	flags["advertise-client-urls"] = client
	flags["listen-peer-urls"] = peer
	for _, name := range []string{"name", "initial-advertise-peer-urls", "initial-cluster", "initial-cluster-state"} {
		if _, seen := flags[name]; !seen {
			order = append(order, name)
		}
	}
	flags["name"] = "default"
	flags["initial-advertise-peer-urls"] = peer
	flags["initial-cluster"] = "default=" + peer
	flags["initial-cluster-state"] = "new"
	var serverArgs []string
	for _, name := range order {
		serverArgs = append(serverArgs, "--"+name+"="+flags[name])
	}

	cmd := exec.Command(server, serverArgs...)
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		fail("start %s: %v", server, err)
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for s := range signals {
			_ = cmd.Process.Signal(s)
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// Serve the unix socket once the server answers on its TCP port: the test polls the
	// socket to know the server is up.
	addr := strings.TrimPrefix(client, "http://")
	for deadline := time.Now().Add(30 * time.Second); ; {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			break
		}
		select {
		case err := <-exited:
			fail("%s exited before serving: %v", server, err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			fail("%s did not serve on %s in 30 s", server, addr)
		}
	}
	listener, err := net.Listen("unix", socket)
	if err != nil {
		_ = cmd.Process.Kill()
		fail("listen on %s: %v", socket, err)
	}
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			go forward(conn, addr)
		}
	}()
	err = <-exited
	listener.Close()
	if err != nil {
		fail("%s: %v", server, err)
	}
}

// forward copies bytes both ways between a unix socket connection and the server's TCP port.
func forward(conn net.Conn, addr string) {
	defer conn.Close()
	upstream, err := net.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer upstream.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(upstream, conn); done <- struct{}{} }()
	go func() { _, _ = io.Copy(conn, upstream); done <- struct{}{} }()
	<-done
}
