//go:build !linux

package main

import (
	"errors"
	"syscall"
	"time"
)

// childAttr leaves the proxy in the benchmark's process group.
func childAttr() *syscall.SysProcAttr { return nil }

// memStatus is only implemented on Linux (/proc/<pid>/status).
func memStatus(int) (rss, peak int64, err error) {
	return 0, 0, errors.New("peak RSS is read from /proc, which this system lacks")
}

// loadAverage is only implemented on Linux.
func loadAverage() string { return "n/a" }

// cpuTime is only implemented on Linux (/proc/<pid>/stat).
func cpuTime(int) (user, system time.Duration, err error) {
	return 0, 0, errors.New("CPU time is read from /proc, which this system lacks")
}

// ioCalls is only implemented on Linux (/proc/<pid>/io).
func ioCalls(int) (reads, writes int64, err error) {
	return 0, 0, errors.New("system calls are counted from /proc, which this system lacks")
}

// threadTicks is only implemented on Linux (/proc/<pid>/task).
func threadTicks(int) (map[string]int64, error) {
	return nil, errors.New("threads are read from /proc, which this system lacks")
}
