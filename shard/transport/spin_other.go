//go:build !linux

package transport

import "syscall"

// spinReadable returns at once where the socket cannot be peeked without
// blocking: the waiting rank parks as before.
func spinReadable(syscall.RawConn, func() bool) {}
