package weights

import (
	"fmt"
	"io"
	"math"
	"os"
)

// source gives access to the bytes of one opened safetensors file, either
// through a read-only memory map or, where mapping is not possible, through
// ReadAt on the open file. Offsets are absolute and already validated
// against the file size by the caller.
type source interface {
	// view returns n bytes at off: zero-copy for a mapping, a new buffer
	// otherwise.
	view(off, n int64) ([]byte, error)
	// readAt fills dst with the bytes at off.
	readAt(dst []byte, off int64) error
	close() error
}

// mapFile is replaced in tests to exercise the ReadAt fallback.
var mapFile = mmapFile

// openSource maps f read-only, falling back to ReadAt if mapping fails. It
// takes ownership of f.
func openSource(f *os.File, size int64) source {
	if data, err := mapFile(f, size); err == nil {
		// The descriptor is not needed once the mapping exists.
		f.Close()
		return &mmapSource{data: data}
	}
	return &fileSource{f: f}
}

type mmapSource struct{ data []byte }

func (m *mmapSource) view(off, n int64) ([]byte, error) {
	return m.data[off : off+n : off+n], nil
}

func (m *mmapSource) readAt(dst []byte, off int64) error {
	copy(dst, m.data[off:off+int64(len(dst))])
	return nil
}

func (m *mmapSource) close() error {
	data := m.data
	m.data = nil
	return munmap(data)
}

type fileSource struct{ f *os.File }

func (s *fileSource) view(off, n int64) ([]byte, error) {
	if n > math.MaxInt {
		return nil, fmt.Errorf("weights: %s: %d bytes at offset %d do not fit in memory on this platform; read fewer rows", s.f.Name(), n, off)
	}
	buf := make([]byte, n)
	if err := s.readAt(buf, off); err != nil {
		return nil, err
	}
	return buf, nil
}

func (s *fileSource) readAt(dst []byte, off int64) error {
	n, err := s.f.ReadAt(dst, off)
	if n == len(dst) {
		return nil
	}
	if err == nil || err == io.EOF {
		return fmt.Errorf("weights: %s: short read of %d bytes at offset %d (file changed while open?): %w", s.f.Name(), len(dst), off, ErrTruncated)
	}
	return fmt.Errorf("weights: reading %s: %w", s.f.Name(), err)
}

func (s *fileSource) close() error { return s.f.Close() }
