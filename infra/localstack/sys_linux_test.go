//go:build linux

package localstack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a helper process (see TestMain).
const helperEnv = "LOCALSTACK_TEST_HELPER"

// TestMain lets the test binary double as a helper that starts moto_server,
// prints its pid and then waits to be killed.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "moto" {
		os.Exit(runMotoHelper())
	}
	os.Exit(m.Run())
}

// runMotoHelper is the helper process's body.
func runMotoHelper() int {
	p, err := StartSecretsManager(context.Background(), nil)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("pid:", p.cmd.Process.Pid)
	time.Sleep(time.Minute)
	return 0
}

// TestParentDeathKillsService kills a process that started moto_server
// without closing it: the kernel must end moto_server too.
func TestParentDeathKillsService(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=moto")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()

	sc := bufio.NewScanner(stdout)
	if !sc.Scan() {
		t.Fatalf("helper printed nothing: %v", sc.Err())
	}
	pidText, ok := strings.CutPrefix(sc.Text(), "pid: ")
	if !ok {
		t.Fatalf("helper: %s", sc.Text())
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil {
		t.Fatal(err)
	}
	if !alive(pid) {
		t.Fatalf("moto_server %d is not running", pid)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("moto_server %d outlived its parent", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i >= 0 && !strings.HasPrefix(strings.TrimSpace(string(stat[i+1:])), "Z")
}

func TestOwnsListener(t *testing.T) {
	tests := []struct {
		name    string
		network string
		addr    string
	}{
		{name: "ipv4", network: "tcp4", addr: "127.0.0.1:0"},
		{name: "all interfaces", network: "tcp", addr: ":0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen(tt.network, tt.addr)
			if err != nil {
				t.Fatal(err)
			}
			port := ln.Addr().(*net.TCPAddr).Port
			own := syscall.Getpgrp()
			if ok, err := ownsListener(own, port); err != nil || !ok {
				t.Errorf("ownsListener(own group, %d) = %v, %v; want true", port, ok, err)
			}
			if ok, err := ownsListener(own+1_000_000, port); err != nil || ok {
				t.Errorf("ownsListener(other group, %d) = %v, %v; want false", port, ok, err)
			}
			ln.Close()
			if ok, err := ownsListener(own, port); err != nil || ok {
				t.Errorf("ownsListener after close = %v, %v; want false", ok, err)
			}
		})
	}
}

func TestGroupMembers(t *testing.T) {
	pids, err := groupMembers(syscall.Getpgrp())
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if pid == os.Getpid() {
			return
		}
	}
	t.Fatalf("own pid %d not in own group %v", os.Getpid(), pids)
}

func TestListeningInodesMissingTable(t *testing.T) {
	inodes := map[string]bool{}
	if err := listeningInodes(filepath.Join(t.TempDir(), "absent"), 80, inodes); err != nil || len(inodes) != 0 {
		t.Fatalf("missing table: %v, %v", inodes, err)
	}
	if err := listeningInodes(t.TempDir(), 80, inodes); err == nil || errors.Is(err, os.ErrNotExist) {
		t.Fatalf("directory as table: %v", err)
	}
}

// TestGroupStopped checks the state Stall waits for: a running group is
// not stopped, and it is once SIGSTOP has taken effect on every thread.
func TestGroupStopped(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = killGroup(pgid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	if stopped, err := groupStopped(pgid); err != nil || stopped {
		t.Fatalf("running: groupStopped = %v, %v; want false", stopped, err)
	}
	p := &Process{name: "sleep", cmd: cmd}
	if err := p.Stall(); err != nil {
		t.Fatal(err)
	}
	if stopped, err := groupStopped(pgid); err != nil || !stopped {
		t.Fatalf("stalled: groupStopped = %v, %v; want true", stopped, err)
	}
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		stopped, err := groupStopped(pgid)
		if err != nil {
			t.Fatal(err)
		}
		if !stopped {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("resumed: still stopped")
		}
		time.Sleep(time.Millisecond)
	}
}
