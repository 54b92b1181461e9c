// Package cuda is the GPU kernels.Backend: gorgonia.org/cu for the CUDA
// driver API, cuBLAS for the GEMMs, and kernels written in CUDA C++
// (kernels/*.cu) compiled to PTX that is committed under ptx/ and embedded.
//
// The device work sits behind a small seam (driver.go): the backend's own
// logic (argument checks, launch geometry, GEMM shapes, the conversion
// workspace, the content-keyed upload cache of block tables and ids,
// deferred frees, and one goroutine per device locked to the OS thread
// that holds the context) is plain Go that builds and is tested in every
// build. Only the files tagged cuda fill the seam with the driver and
// register the backend as "cuda" and "cuda:N"; they need cgo and the CUDA
// toolkit, and gorgonia.org/cu's init exits the process on a host without
// a driver, so only the companion executable bin/tessera-cuda links them
// (worker/devexec, docs/cuda.md).
//
// kernels/cpu is the oracle: every op follows its semantics, the
// conformance and golden tests (tagged cuda, run by gpu-check.sh on a GPU
// host) compare against it, and kernels/emu runs the CUDA kernels on the
// host against C++ references.
package cuda
