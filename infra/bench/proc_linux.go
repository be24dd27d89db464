//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// childAttr puts the proxy in its own process group (a Ctrl-C reaches only
// the benchmark, which then stops it in order) and has the kernel kill it
// if the benchmark dies without cleaning up.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// memStatus returns a process's resident set size now (VmRSS) and at its
// peak (VmHWM), in bytes, from /proc/<pid>/status.
func memStatus(pid int) (rss, peak int64, err error) {
	kb, err := procValues(fmt.Sprintf("/proc/%d/status", pid), "VmRSS", "VmHWM")
	if err != nil {
		return 0, 0, err
	}
	return kb[0] << 10, kb[1] << 10, nil
}

// procValues reads the numeric fields names (in that order) of a /proc
// file of "name: value" lines, such as /proc/<pid>/status ("VmRSS:  123
// kB", the unit left out) or /proc/<pid>/io. Every name must be there.
func procValues(path string, names ...string) ([]int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	vals, found := make([]int64, len(names)), 0
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		i := slices.Index(names, name)
		if !ok || i < 0 {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("parse %s %q in %s: %w", name, v, path, err)
		}
		vals[i] = n
		found++
	}
	if found != len(names) {
		return nil, fmt.Errorf("%s lacks one of %v", path, names)
	}
	return vals, nil
}

// loadAverage returns the 1-minute load average from /proc/loadavg: other
// work on the machine shows up in the tail percentiles.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "n/a"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "n/a"
}

// cpuTime returns the CPU time (user plus system) a process has used, from
// /proc/<pid>/stat, counted in the kernel's USER_HZ ticks (100 a second on
// Linux).
func cpuTime(pid int) (user, system time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// utime and stime are fields 14 and 15.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("no command name in /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	var ticks [2]int64
	for j, s := range f[11:13] {
		if ticks[j], err = strconv.ParseInt(s, 10, 64); err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
	}
	return time.Duration(ticks[0]) * 10 * time.Millisecond, time.Duration(ticks[1]) * 10 * time.Millisecond, nil
}

// threadTicks returns the CPU ticks (user plus system) of each of a
// process's threads, by thread id, from /proc/<pid>/task/*/stat.
func threadTicks(pid int) (map[string]int64, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(ents))
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "stat"))
		if err != nil {
			continue // the thread ended
		}
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			return nil, fmt.Errorf("no command name in %s/%s/stat", dir, e.Name())
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			return nil, fmt.Errorf("short %s/%s/stat", dir, e.Name())
		}
		u, err1 := strconv.ParseInt(f[11], 10, 64)
		s, err2 := strconv.ParseInt(f[12], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("%s/%s/stat: %w", dir, e.Name(), err)
		}
		out[e.Name()] = u + s
	}
	return out, nil
}

// ioCalls returns the read and write system calls a process has made
// (syscr and syscw in /proc/<pid>/io): each socket read and write counts,
// which is most of a proxy's system time.
func ioCalls(pid int) (reads, writes int64, err error) {
	v, err := procValues(fmt.Sprintf("/proc/%d/io", pid), "syscr", "syscw")
	if err != nil {
		return 0, 0, err
	}
	return v[0], v[1], nil
}
