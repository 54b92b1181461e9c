/* cushim.h: the header kernels/cuda's own cgo code includes. It pulls in
 * the driver API through the CUDA 12/13 compat shim (include/cuda.h, first
 * on the include path via #cgo CFLAGS: -I${SRCDIR}/include) and cuBLAS.
 * See include/cuda.h for what the shim maps and why gorgonia.org/cu needs
 * it on CGO_CFLAGS as well.
 */
#ifndef TESSERA_CUSHIM_H
#define TESSERA_CUSHIM_H
#include <cuda.h>
#include <cublas_v2.h>
#endif
