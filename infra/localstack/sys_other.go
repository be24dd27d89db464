//go:build unix && !linux

package localstack

import "syscall"

// sysProcAttr puts a child in its own process group, so Close can end it
// with all its children. Outside Linux there is no parent-death signal.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// ownsListener cannot tell who holds a port outside Linux; it trusts that
// the service which answered is the one started.
func ownsListener(pgid, port int) (bool, error) {
	return true, nil
}

// groupStopped cannot see thread states outside Linux; it trusts that
// SIGSTOP has taken effect.
func groupStopped(pgid int) (bool, error) {
	return true, nil
}
