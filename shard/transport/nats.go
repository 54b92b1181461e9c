package transport

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
)

// NATS is a Transport over NATS core subjects: persistent subscriptions
// with asynchronous handlers, no request/reply. Frames are protobuf
// encoded; bytes that do not decode are dropped and counted.
type NATS struct {
	sub, pub   *nats.Conn
	pendMsgs   int
	pendBytes  int
	subs       subSet[*natsSub]
	maxPayload int
	bufs       sync.Pool
}

// NATSOption adjusts NewNATS.
type NATSOption func(*NATS)

// PublishConn makes the transport publish on pc and subscribe on the
// connection given to NewNATS, so each direction has its own connection
// (and its own socket buffers and flusher).
func PublishConn(pc *nats.Conn) NATSOption { return func(t *NATS) { t.pub = pc } }

// PendingLimits sets each subscription's client-side buffer: messages not
// yet handled beyond these limits are dropped (and counted). The defaults,
// 65536 messages and 256 MiB, hold hundreds of in-flight 1 MiB chunks.
func PendingLimits(msgs, bytes int) NATSOption {
	return func(t *NATS) { t.pendMsgs, t.pendBytes = msgs, bytes }
}

// NewNATS returns a transport on nc. The caller keeps ownership of the
// connections: Close ends the subscriptions but leaves them open.
func NewNATS(nc *nats.Conn, opts ...NATSOption) (*NATS, error) {
	if nc == nil {
		return nil, fmt.Errorf("%w: nil nats connection", ErrInvalid)
	}
	t := &NATS{sub: nc, pub: nc, pendMsgs: 1 << 16, pendBytes: 256 << 20}
	for _, o := range opts {
		o(t)
	}
	if !t.sub.IsConnected() || !t.pub.IsConnected() {
		return nil, fmt.Errorf("%w: connection to %s is not connected", ErrUnreachable, t.sub.ConnectedUrlRedacted())
	}
	t.maxPayload = int(min(t.sub.MaxPayload(), t.pub.MaxPayload()))
	return t, nil
}

// MaxPayload is the server's max_payload as announced to the connections.
func (t *NATS) MaxPayload() int { return t.maxPayload }

// Publish implements Transport. NATS buffers the message and flushes it in
// the background; Publish does not wait for the subscribers.
func (t *NATS) Publish(ctx context.Context, subject string, f *tesserav1.Frame) error {
	if err := checkPublish(ctx, subject); err != nil {
		return err
	}
	bp, _ := t.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer t.bufs.Put(bp)
	b, err := proto.MarshalOptions{}.MarshalAppend((*bp)[:0], f)
	if err != nil {
		return fmt.Errorf("transport: encode frame: %w", err)
	}
	*bp = b
	if len(b) > t.maxPayload {
		return fmt.Errorf("%w: %d > %d bytes", ErrTooLarge, len(b), t.maxPayload)
	}
	if err := t.pub.Publish(subject, b); err != nil {
		if err == nats.ErrConnectionClosed {
			return fmt.Errorf("%w: %v", ErrClosed, err)
		}
		return fmt.Errorf("transport: publish %s: %w", subject, err)
	}
	return nil
}

// Subscribe implements Transport. It returns once the server has the
// subscription, so frames published afterwards by any connection arrive.
func (t *NATS) Subscribe(ctx context.Context, subject string, h Handler) (Subscription, error) {
	if err := checkSubscribe(subject); err != nil {
		return nil, err
	}
	s := &natsSub{t: t}
	ns, err := t.sub.Subscribe(subject, func(m *nats.Msg) {
		f := new(tesserav1.Frame)
		if err := proto.Unmarshal(m.Data, f); err != nil {
			s.undecodable.Add(1)
			return
		}
		h(f)
	})
	if err != nil {
		return nil, fmt.Errorf("transport: subscribe %s: %w", subject, err)
	}
	s.ns = ns
	if err := ns.SetPendingLimits(t.pendMsgs, t.pendBytes); err != nil {
		ns.Unsubscribe()
		return nil, err
	}
	if err := t.subs.add(s); err != nil {
		ns.Unsubscribe()
		return nil, err
	}
	fctx := ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		fctx, cancel = context.WithTimeout(ctx, 5*time.Second) // nats wants one
		defer cancel()
	}
	if err := t.sub.FlushWithContext(fctx); err != nil {
		s.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("transport: subscribe %s: %w", subject, err)
	}
	s.stop = context.AfterFunc(ctx, func() { s.Close() })
	return s, nil
}

// Close implements Transport.
func (t *NATS) Close() error {
	t.subs.closeAll()
	return nil
}

type natsSub struct {
	t           *NATS
	ns          *nats.Subscription
	stop        func() bool
	undecodable atomic.Int64
	once        sync.Once
}

func (s *natsSub) Dropped() int64 {
	n := s.undecodable.Load()
	if d, err := s.ns.Dropped(); err == nil {
		n += int64(d)
	}
	return n
}

func (s *natsSub) Close() error {
	var err error
	s.once.Do(func() {
		if s.stop != nil {
			s.stop()
		}
		s.t.subs.remove(s)
		if uerr := s.ns.Unsubscribe(); uerr != nil && uerr != nats.ErrConnectionClosed && uerr != nats.ErrBadSubscription {
			err = uerr
		}
	})
	return err
}

// Connect dials the NATS server at url (comma-separated for a cluster)
// and fails fast with an error wrapping ErrUnreachable that names the
// address, e.g. "nats unreachable: nats at nats://127.0.0.1:1: ... (is
// nats-server running? pass --nats)". Once connected it reconnects
// forever. opts are applied after the defaults.
func Connect(url string, opts ...nats.Option) (*nats.Conn, error) {
	all := append([]nats.Option{
		nats.Name("tessera"),
		nats.Timeout(2 * time.Second),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100 * time.Millisecond),
	}, opts...)
	nc, err := nats.Connect(url, all...)
	if err != nil {
		return nil, fmt.Errorf("%w: nats at %s: %v (is nats-server running? pass --nats)", ErrUnreachable, url, err)
	}
	return nc, nil
}

// EmbeddedNATS starts a NATS server on 127.0.0.1 and a random free port
// (unless opts sets one), without logging or signal handlers, and waits
// until it accepts clients. opts may be nil; it is copied, not modified.
// The caller stops the server with Shutdown (and WaitForShutdown).
func EmbeddedNATS(opts *server.Options) (*server.Server, string, error) {
	o := &server.Options{}
	if opts != nil {
		o = opts.Clone()
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.Port == 0 {
		o.Port = server.RANDOM_PORT
	}
	o.NoLog, o.NoSigs = true, true
	s, err := server.NewServer(o)
	if err != nil {
		return nil, "", fmt.Errorf("transport: embedded nats: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, "", fmt.Errorf("transport: embedded nats not ready after 10s")
	}
	return s, s.ClientURL(), nil
}
