/* Tessera's CUDA 12/13 compatibility shim for the driver API header.
 *
 * gorgonia.org/cu v0.9.6 was written against the CUDA ≤ 12 driver API. CUDA
 * 13 changed the signatures behind cuCtxCreate (now _v4, with a params
 * struct), cuMemAdvise and cuMemPrefetchAsync (CUmemLocation) and the cuGraph
 * edge calls (edge data). This header is named cuda.h and sits first on the
 * include path (CGO_CFLAGS="-I<repo>/kernels/cuda/include ...", which `make
 * cuda` and gpu-check.sh set, because #cgo CFLAGS of our package do not reach
 * gorgonia's cgo compile), so `#include <cuda.h>` in gorgonia's files lands
 * here; #include_next pulls in the real header, and the names are mapped back
 * to the entry points gorgonia calls. The old symbols are still exported by
 * the CUDA 13 driver (verified on an H200 with CUDA 13.0 / driver 580:
 * device query, PTX load and launch, cuBLAS sgemm).
 *
 * Against CUDA 12 the guards are no-ops or redeclare identical prototypes
 * (cuCtxCreate is already cuCtxCreate_v2 there), so one tree builds against
 * both. Derived from shared/gpu/cushim-example.h.
 */
#ifndef TESSERA_CUSHIM_CUDA_H
#define TESSERA_CUSHIM_CUDA_H
#include_next <cuda.h>
#if defined(cuCtxCreate)
#undef cuCtxCreate
#define cuCtxCreate cuCtxCreate_v2
CUresult CUDAAPI cuCtxCreate_v2(CUcontext *pctx, unsigned int flags, CUdevice dev);
#endif
#if defined(cuMemPrefetchAsync)
#undef cuMemPrefetchAsync
CUresult CUDAAPI cuMemPrefetchAsync(CUdeviceptr devPtr, size_t count, CUdevice dstDevice, CUstream hStream);
#endif
#if defined(cuMemAdvise)
#undef cuMemAdvise
CUresult CUDAAPI cuMemAdvise(CUdeviceptr devPtr, size_t count, CUmem_advise advice, CUdevice device);
#endif
#if defined(cuGraphAddDependencies)
#undef cuGraphAddDependencies
CUresult CUDAAPI cuGraphAddDependencies(CUgraph hGraph, const CUgraphNode *from, const CUgraphNode *to, size_t numDependencies);
#endif
#if defined(cuGraphRemoveDependencies)
#undef cuGraphRemoveDependencies
CUresult CUDAAPI cuGraphRemoveDependencies(CUgraph hGraph, const CUgraphNode *from, const CUgraphNode *to, size_t numDependencies);
#endif
#if defined(cuGraphGetEdges)
#undef cuGraphGetEdges
CUresult CUDAAPI cuGraphGetEdges(CUgraph hGraph, CUgraphNode *from, CUgraphNode *to, size_t *numEdges);
#endif
#if defined(cuGraphNodeGetDependencies)
#undef cuGraphNodeGetDependencies
CUresult CUDAAPI cuGraphNodeGetDependencies(CUgraphNode hNode, CUgraphNode *dependencies, size_t *numDependencies);
#endif
#if defined(cuGraphNodeGetDependentNodes)
#undef cuGraphNodeGetDependentNodes
CUresult CUDAAPI cuGraphNodeGetDependentNodes(CUgraphNode hNode, CUgraphNode *dependentNodes, size_t *numDependentNodes);
#endif
#endif /* TESSERA_CUSHIM_CUDA_H */
