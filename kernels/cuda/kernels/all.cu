// One translation unit, so `make cuda-ptx` emits one PTX module per target
// (ptx/tessera.sm_90.ptx, ptx/tessera.compute_80.ptx) that kernels/cuda
// embeds and loads with cuModuleLoadData.
#include "norm.cu"
#include "elementwise.cu"
#include "rope.cu"
#include "attention.cu"
#include "topk.cu"
