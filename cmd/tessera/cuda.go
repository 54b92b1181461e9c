//go:build cuda

package main

// A `make cuda` build registers the CUDA backend, so --device cuda:N works.
import _ "github.com/tessera-llm/tessera/kernels/cuda"
