package netdelay

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"testing"
	"time"
)

// echo serves connections that write back what they read.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func TestRelay(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delay time.Duration
		size  int
	}{
		{"no delay, 1 MiB", 0, 1 << 20},
		{"20ms, a ping", 20 * time.Millisecond, 4},
		{"5ms, 1 MiB", 5 * time.Millisecond, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Start("127.0.0.1:0", echo(t), tc.delay)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			c, err := net.Dial("tcp", r.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			msg := make([]byte, tc.size)
			rand.Read(msg)
			start := time.Now()
			go func() { _, _ = c.Write(msg) }()
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatal(err)
			}
			rtt := time.Since(start)
			if !bytes.Equal(got, msg) {
				t.Fatal("the echo differs from what was sent")
			}
			// Each way holds every chunk for the delay.
			if rtt < 2*tc.delay {
				t.Errorf("round trip %v, under twice the delay %v", rtt, tc.delay)
			}
			if late := Quantiles(r.Samples(), 0)[0]; late < 0 {
				t.Errorf("a chunk left %v before it was due", -late)
			}
		})
	}
}

// A target that refuses costs the one connection, not the relay; Close
// ends the connections it relays.
func TestRelayFailures(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	r, err := Start("127.0.0.1:0", dead, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("a connection to a refusing target: read %v, want it closed", err)
	}
	c.Close()
	r.Close()

	r, err = Start("127.0.0.1:0", echo(t), time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	c, err = net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	r.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("after Close: read %v, want the connection closed", err)
	}
	if _, err := Start("127.0.0.1:0", dead, -time.Millisecond); err == nil {
		t.Error("a negative delay was accepted")
	}
}

// Close returns while a pump is blocked writing to a target that accepts
// and never reads.
func TestRelayCloseUnblocksWriters(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never read
		}
	}()
	r, err := Start("127.0.0.1:0", ln.Addr().String(), 0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() { // fills the target's socket, then the relay's write blocks
		b := make([]byte, 1<<20)
		for {
			if _, err := c.Write(b); err != nil {
				return
			}
		}
	}()
	time.Sleep(500 * time.Millisecond)
	closed := make(chan struct{})
	go func() { r.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return with a pump blocked writing")
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
