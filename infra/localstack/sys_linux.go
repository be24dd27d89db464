//go:build linux

package localstack

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// sysProcAttr puts a child in its own process group, so Close can end it
// with all its children, and has the kernel SIGKILL it when the thread that
// started it dies (the Go runtime keeps its threads, so in practice: when
// this process dies, however it dies).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// ownsListener reports whether a process in the process group pgid holds a
// TCP socket listening on port, by matching the socket inodes in
// /proc/net/tcp{,6} against the group's open file descriptors.
func ownsListener(pgid, port int) (bool, error) {
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if err := listeningInodes(table, port, inodes); err != nil {
			return false, err
		}
	}
	if len(inodes) == 0 {
		return false, nil
	}
	pids, err := groupMembers(pgid)
	if err != nil {
		return false, err
	}
	for _, pid := range pids {
		fdDir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
		entries, err := os.ReadDir(fdDir)
		if err != nil {
			continue // exited meanwhile, or not ours to read
		}
		for _, e := range entries {
			link, err := os.Readlink(filepath.Join(fdDir, e.Name()))
			if err != nil {
				continue
			}
			if inode, ok := strings.CutPrefix(link, "socket:["); ok && inodes[strings.TrimSuffix(inode, "]")] {
				return true, nil
			}
		}
	}
	return false, nil
}

// listeningInodes adds to inodes the socket inodes listening on port in the
// /proc/net table at path. A missing table (no IPv6) is not an error.
func listeningInodes(path string, port int, inodes map[string]bool) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	wantPort := fmt.Sprintf(":%04X", port)
	const stListen = "0A"
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != stListen || !strings.HasSuffix(fields[1], wantPort) {
			continue
		}
		inodes[fields[9]] = true
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

// groupMembers lists the pids whose process group is pgid.
func groupMembers(pgid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parens.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) >= 3 && fields[2] == strconv.Itoa(pgid) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// groupStopped reports whether every thread of every process in the group
// pgid is stopped (state T or t in /proc/<pid>/task/<tid>/stat). Processes
// and threads that have ended count as stopped: they answer nothing.
func groupStopped(pgid int) (bool, error) {
	pids, err := groupMembers(pgid)
	if err != nil {
		return false, err
	}
	for _, pid := range pids {
		dir := filepath.Join("/proc", strconv.Itoa(pid), "task")
		tasks, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("list threads of %d: %w", pid, err)
		}
		for _, task := range tasks {
			stat, err := os.ReadFile(filepath.Join(dir, task.Name(), "stat"))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return false, fmt.Errorf("read thread state: %w", err)
			}
			// pid (comm) state ...; comm may hold spaces and parens.
			i := strings.LastIndexByte(string(stat), ')')
			if i < 0 || i+2 >= len(stat) {
				return false, fmt.Errorf("unexpected %s", filepath.Join(dir, task.Name(), "stat"))
			}
			switch stat[i+2] {
			case 'T', 't', 'Z', 'X':
			default:
				return false, nil
			}
		}
	}
	return true, nil
}
