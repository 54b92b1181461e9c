package transport

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestSpinReadable: with nothing to read the wait lasts meshSpin (never
// less), with bytes waiting it returns at once and leaves them for the
// reader, and a done waiter does not wait at all.
func TestSpinReadable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	w, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	raw, err := r.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	spinReadable(raw, func() bool { return false })
	if d := time.Since(start); d < meshSpin {
		t.Fatalf("gave up after %v with nothing to read, before meshSpin (%v)", d, meshSpin)
	}

	// 100 waits that each ran the whole spin would take 100·meshSpin.
	start = time.Now()
	for range 100 {
		spinReadable(raw, func() bool { return true })
	}
	if d := time.Since(start); d > 50*meshSpin {
		t.Fatalf("100 waits with the caller already done took %v", d)
	}

	if _, err := w.Write([]byte("partial")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // loopback delivers long before this
	start = time.Now()
	for range 100 {
		spinReadable(raw, func() bool { return false })
	}
	if d := time.Since(start); d > 50*meshSpin {
		t.Fatalf("100 waits with bytes to read took %v: the spin does not see them", d)
	}
	got := make([]byte, 7)
	if _, err := io.ReadFull(r, got); err != nil || string(got) != "partial" {
		t.Fatalf("after the spins the reader got %q, %v: the spin consumed bytes", got, err)
	}
}
