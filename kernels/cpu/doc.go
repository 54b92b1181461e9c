// Package cpu is the pure-Go kernels.Backend, registered as "cpu". It is
// the oracle the other backends are checked against.
//
// Activations are float32 tensors; weights may stay F16 or BF16 (uploaded
// with Backend.Upload) and are widened to float32 inside the kernels, so a
// half checkpoint costs half the memory and half the memory bandwidth.
// Tensor exposes its storage (Tensor.F32, Tensor.Half, Data) for tests and
// for code that fills buffers directly.
//
// Every op splits its work over a fixed pool of goroutines started by New
// (WithThreads sets how many; the calling goroutine is one of them). Ops
// write into caller-provided tensors and take jobs and scratch memory from
// free lists, so a decode loop with preallocated tensors allocates nothing
// per token once warm.
//
// MatMul has two shapes of kernel. Few rows of x (decode) stream each
// weight row once, parallel over output columns, with half weights widened
// on the fly. Many rows (prefill) take 4 weight rows at a time, widened once
// into per-goroutine scratch, and dot them with 2 rows of x at a time (8
// accumulators: as many as Go keeps in registers), so each weight block is
// widened once and reused across all of x.
package cpu
