package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// Limits bound what one client can hold of the HTTP server; zero fields
// take the defaults. There is deliberately no write timeout: a streamed
// completion may run for minutes.
type Limits struct {
	// ReadHeader is how long a client may take to send a request's
	// headers (default 10 s).
	ReadHeader time.Duration
	// BodyIdle is how long a request body may go without a byte
	// (default 10 s), and Body how long a whole body may take (default
	// 60 s, which a byte a second no longer stretches); a body past
	// either is cut with 408.
	BodyIdle, Body time.Duration
	// Idle is how long a keep-alive connection may wait for its next
	// request (default 60 s).
	Idle time.Duration
	// ConnsPerClient caps the open connections from one client address
	// (default 256); a request on a connection past it is answered 429
	// and the connection closed. Behind a proxy every client shares its
	// address: raise it there.
	ConnsPerClient int
}

func (l *Limits) defaults() {
	if l.ReadHeader <= 0 {
		l.ReadHeader = 10 * time.Second
	}
	if l.BodyIdle <= 0 {
		l.BodyIdle = 10 * time.Second
	}
	if l.Body <= 0 {
		l.Body = 60 * time.Second
	}
	if l.Idle <= 0 {
		l.Idle = 60 * time.Second
	}
	if l.ConnsPerClient <= 0 {
		l.ConnsPerClient = 256
	}
}

// HTTPServer is an http.Server for s with its Limits' timeouts; serve it
// on Listener(ln) for the per-client cap.
func (s *Server) HTTPServer() *http.Server {
	l := s.cfg.Limits
	return &http.Server{Handler: s, ReadHeaderTimeout: l.ReadHeader, IdleTimeout: l.Idle,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if cc := capped(c); cc != nil && cc.over {
				return context.WithValue(ctx, overCapKey{}, true)
			}
			return ctx
		}}
}

// overCapKey marks, in a request's context, a connection past
// Limits.ConnsPerClient.
type overCapKey struct{}

func overCap(r *http.Request) bool { return r.Context().Value(overCapKey{}) != nil }

// Listener counts ln's connections per client address, so that
// HTTPServer answers those past Limits.ConnsPerClient with 429.
func (s *Server) Listener(ln net.Listener) net.Listener {
	return &capListener{Listener: ln, max: s.cfg.Limits.ConnsPerClient, open: map[string]int{}}
}

type capListener struct {
	net.Listener
	max  int
	mu   sync.Mutex
	open map[string]int
}

func (l *capListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	l.mu.Lock()
	l.open[host]++
	over := l.open[host] > l.max
	l.mu.Unlock()
	return &cappedConn{Conn: c, over: over, release: sync.OnceFunc(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.open[host]--; l.open[host] == 0 {
			delete(l.open, host)
		}
	})}, nil
}

// cappedConn is a connection counted against its client's cap; over is
// set when it came past the cap.
type cappedConn struct {
	net.Conn
	over    bool
	release func()
}

func (c *cappedConn) Close() error {
	c.release()
	return c.Conn.Close()
}

// capped finds the cappedConn under c (a TLS connection wraps it).
func capped(c net.Conn) *cappedConn {
	for {
		switch x := c.(type) {
		case *cappedConn:
			return x
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return nil
		}
	}
}

// idleBody cuts a body that goes BodyIdle without a byte or takes longer
// than Body in all: each Read moves the connection's read deadline, and
// the end of the body clears it, so a streamed response after it is
// never cut.
type idleBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
	end  time.Time
}

func (b *idleBody) Read(p []byte) (int, error) {
	deadline := time.Now().Add(b.idle)
	if b.end.Before(deadline) {
		deadline = b.end
	}
	_ = b.rc.SetReadDeadline(deadline)
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		// A cut body keeps its past deadline, so the server's own
		// reads of the rest fail at once too.
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// errBodyTimeout answers a body cut by Limits.BodyIdle or Limits.Body.
func errBodyTimeout(l Limits) error {
	return &apiError{status: http.StatusRequestTimeout,
		msg: fmt.Sprintf("the request body was too slow: it must not pause for %v nor take over %v in all", l.BodyIdle, l.Body)}
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// checkJSON refuses a body that is not declared application/json: a web
// page can send text/plain (or untyped) bodies cross-site without asking,
// so accepting them would let any page drive an unauthenticated server.
func checkJSON(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || !strings.EqualFold(mt, "application/json") {
		if ct == "" {
			ct = "none"
		}
		return &apiError{status: http.StatusUnsupportedMediaType, param: "Content-Type",
			msg: "Content-Type must be application/json, got " + ct}
	}
	return nil
}
