//go:build !linux && !darwin

package h1client

// alive reports whether pc, idle, is still as its last answer left it. On
// this system it cannot tell without reading, and says yes: a connection
// the server closed while idle fails the call that takes it (with
// Options.NeverResend) or is retried once (without).
func (pc *conn) alive() bool { return true }
