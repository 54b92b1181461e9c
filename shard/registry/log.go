package registry

import (
	"os"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// quietLogger logs the etcd client's errors only (its default logs retries
// at warn level, which floods a worker's output while etcd restarts).
func quietLogger() *zap.Logger {
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(zapcore.ErrorLevel)
	cfg.Sampling = nil
	l, err := cfg.Build()
	if err != nil {
		return zap.NewNop()
	}
	return l
}

// errorLogger is the embedded etcd's logger: errors only, to stderr, and
// nothing at all once the server is being stopped.
func errorLogger(stopping *atomic.Bool) *zap.Logger {
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	core := zapcore.NewCore(enc, zapcore.Lock(os.Stderr), zapcore.ErrorLevel)
	return zap.New(&muteCore{Core: core, mute: stopping})
}

type muteCore struct {
	zapcore.Core
	mute *atomic.Bool
}

func (c *muteCore) With(f []zapcore.Field) zapcore.Core {
	return &muteCore{Core: c.Core.With(f), mute: c.mute}
}

func (c *muteCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	// etcd logs this once at start-up when it elects itself before the
	// first term is persisted; it retries and succeeds on its own.
	if c.mute.Load() || !c.Enabled(e.Level) || e.Message == "failed to update storage version" {
		return ce
	}
	return ce.AddCore(e, c)
}
