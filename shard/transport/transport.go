package transport

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrClosed: the transport, subscription or receiver is closed.
	ErrClosed = errors.New("transport closed")
	// ErrTooLarge: an encoded frame exceeds the transport's MaxPayload.
	ErrTooLarge = errors.New("frame larger than max payload")
	// ErrMalformed: a frame or tensor breaks the frame rules (see ValidateFrame).
	ErrMalformed = errors.New("malformed frame")
	// ErrInvalid: a subject, cluster name or argument is not usable.
	ErrInvalid = errors.New("invalid argument")
	// ErrUnreachable: the NATS server could not be reached.
	ErrUnreachable = errors.New("nats unreachable")
)

// Handler receives the frames of a subscription. It must not block and must
// not modify f. Depending on the transport it runs on the publisher's
// goroutine (in-process) or a per-subscription goroutine (NATS), and may run
// concurrently with itself.
type Handler func(f *tesserav1.Frame)

// Transport moves frames between the ranks of a cluster. Implementations:
// InProcess (Go channels' cost: one process holding several ranks) and NATS;
// a direct peer TCP mesh fits the same interface.
type Transport interface {
	// Publish sends f on subject (no wildcards). It does not retain f or
	// its data after it returns. It fails with ErrTooLarge when the
	// encoded frame exceeds MaxPayload; SendTensor chunks to fit.
	Publish(ctx context.Context, subject string, f *tesserav1.Frame) error
	// Subscribe calls h for each frame published on subject, which may
	// use NATS wildcards ("*" one token, ">" the rest). The subscription
	// is active when Subscribe returns, and ends on Subscription.Close,
	// when ctx ends, or when the transport closes.
	Subscribe(ctx context.Context, subject string, h Handler) (Subscription, error)
	// MaxPayload is the largest encoded frame Publish accepts, in bytes.
	MaxPayload() int
	// Close ends every subscription. It does not close connections the
	// transport was given.
	Close() error
}

// Subscription is a live Subscribe.
type Subscription interface {
	// Dropped counts messages that arrived but were not delivered:
	// bytes that are not a Frame, or messages the server or client
	// dropped because the handler fell behind.
	Dropped() int64
	// Close ends the subscription; it is safe to call more than once.
	Close() error
}

// Subjects names the NATS subjects of one plan version of a cluster:
//
//	tessera.<cluster>.<plan>.step                    steps, coordinator → every rank
//	tessera.<cluster>.<plan>.s<stage>.r<rank>.act    hidden states sent by stage/rank to the next stage
//	tessera.<cluster>.<plan>.s<stage>.r<rank>.reduce all-reduce partial sums sent by stage/rank
//	tessera.<cluster>.<plan>.s<stage>.r<rank>.result StepResults sent by a last-stage rank
//
// Every subject names its sender, so a receiver picks its sources by
// subscription (ReduceAll, ResultAll use wildcards) and a plan change
// moves all traffic to fresh subjects.
type Subjects struct {
	Cluster string
	Plan    uint64
}

// NewSubjects checks that cluster is a single subject token.
func NewSubjects(cluster string, plan uint64) (Subjects, error) {
	if cluster == "" || strings.ContainsAny(cluster, ".*> \t\r\n\x00") {
		return Subjects{}, fmt.Errorf("%w: cluster name %q must be a non-empty NATS token (no '.', '*', '>' or spaces)", ErrInvalid, cluster)
	}
	return Subjects{Cluster: cluster, Plan: plan}, nil
}

func (s Subjects) base() string {
	return "tessera." + s.Cluster + "." + strconv.FormatUint(s.Plan, 10) + "."
}

func (s Subjects) rank(stage, rank int, kind string) string {
	return s.base() + "s" + strconv.Itoa(stage) + ".r" + strconv.Itoa(rank) + "." + kind
}

// Step is where the coordinator publishes steps for every rank.
func (s Subjects) Step() string { return s.base() + "step" }

// Act is where stage/rank publishes hidden states for the next stage.
func (s Subjects) Act(stage, rank int) string { return s.rank(stage, rank, "act") }

// Reduce is where stage/rank publishes its all-reduce partial sums.
func (s Subjects) Reduce(stage, rank int) string { return s.rank(stage, rank, "reduce") }

// ReduceAll matches the partial sums of every rank of stage.
func (s Subjects) ReduceAll(stage int) string {
	return s.base() + "s" + strconv.Itoa(stage) + ".*.reduce"
}

// Result is where a rank publishes its StepResults: a last-stage rank's
// rows, another stage's busy time, any rank's error.
func (s Subjects) Result(stage, rank int) string { return s.rank(stage, rank, "result") }

// ResultAll matches the StepResults of every rank.
func (s Subjects) ResultAll() string { return s.base() + "*.*.result" }

// All matches every subject of the plan.
func (s Subjects) All() string { return s.base() + ">" }

// Frames.

// MaxDims bounds a tensor's rank.
const MaxDims = 8

// DTypeSize is the size in bytes of one element of dt, or 0 when dt is not
// a known element type.
func DTypeSize(dt tesserav1.DType) int {
	switch dt {
	case tesserav1.DType_DTYPE_F32:
		return 4
	case tesserav1.DType_DTYPE_F16, tesserav1.DType_DTYPE_BF16:
		return 2
	case tesserav1.DType_DTYPE_U8:
		return 1
	}
	return 0
}

// TensorBytes is the byte size of a tensor of the given dtype and shape,
// or an error wrapping ErrMalformed for an unknown dtype, a negative or
// too many dimensions, or a size that overflows int64.
func TensorBytes(dt tesserav1.DType, shape []int64) (int64, error) {
	size := int64(DTypeSize(dt))
	if size == 0 {
		return 0, fmt.Errorf("%w: unknown dtype %d", ErrMalformed, dt)
	}
	if len(shape) > MaxDims {
		return 0, fmt.Errorf("%w: %d dimensions", ErrMalformed, len(shape))
	}
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("%w: negative dimension in %v", ErrMalformed, shape)
		}
		if d != 0 && size > math.MaxInt64/d {
			return 0, fmt.Errorf("%w: shape %v overflows", ErrMalformed, shape)
		}
		size *= d
	}
	return size, nil
}

// ValidateFrame checks one frame on its own: a known kind and dtype,
// non-negative stage, rank and seq, 0 <= chunk < chunks, a valid shape, at
// most chunks chunks of a non-empty tensor (each chunk carries data), data
// no larger than the tensor, and, for a single chunk, data exactly the
// tensor's size. Errors wrap ErrMalformed.
func ValidateFrame(f *tesserav1.Frame) error {
	switch f.GetKind() {
	case tesserav1.FrameKind_FRAME_KIND_ACTIVATION, tesserav1.FrameKind_FRAME_KIND_REDUCE,
		tesserav1.FrameKind_FRAME_KIND_STEP, tesserav1.FrameKind_FRAME_KIND_RESULT:
	default:
		return fmt.Errorf("%w: unknown kind %d", ErrMalformed, f.GetKind())
	}
	if f.GetStage() < 0 || f.GetRank() < 0 || f.GetSeq() < 0 {
		return fmt.Errorf("%w: negative stage, rank or seq", ErrMalformed)
	}
	chunks, chunk := int64(f.GetChunks()), int64(f.GetChunk())
	if chunks < 1 || chunk < 0 || chunk >= chunks {
		return fmt.Errorf("%w: chunk %d of %d", ErrMalformed, chunk, chunks)
	}
	total, err := TensorBytes(f.GetDtype(), f.GetShape())
	if err != nil {
		return err
	}
	n := int64(len(f.GetData()))
	switch {
	case chunks == 1 && n != total:
		return fmt.Errorf("%w: %d data bytes for shape %v (%d bytes)", ErrMalformed, n, f.GetShape(), total)
	case chunks > 1 && (n == 0 || n > total || chunks > total):
		return fmt.Errorf("%w: chunk %d/%d has %d bytes of a %d-byte tensor", ErrMalformed, chunk, chunks, n, total)
	}
	return nil
}

// DecodeFrame decodes and validates an encoded Frame. It never panics;
// every failure wraps ErrMalformed.
func DecodeFrame(b []byte) (*tesserav1.Frame, error) {
	f := new(tesserav1.Frame)
	if err := proto.Unmarshal(b, f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := ValidateFrame(f); err != nil {
		return nil, err
	}
	return f, nil
}

// cloneFrame copies f and its data, so that the copy does not alias the
// publisher's buffers.
func cloneFrame(f *tesserav1.Frame) *tesserav1.Frame {
	return &tesserav1.Frame{
		PlanVersion: f.PlanVersion,
		StepId:      f.StepId,
		Stage:       f.Stage,
		Rank:        f.Rank,
		Kind:        f.Kind,
		Seq:         f.Seq,
		Chunk:       f.Chunk,
		Chunks:      f.Chunks,
		Dtype:       f.Dtype,
		Shape:       append([]int64(nil), f.Shape...),
		Data:        append([]byte(nil), f.Data...),
	}
}

func checkPublish(ctx context.Context, subject string) error {
	if subject == "" || strings.ContainsAny(subject, "*> \t\r\n") {
		return fmt.Errorf("%w: publish subject %q", ErrInvalid, subject)
	}
	return ctx.Err()
}
