// diffusers' GEGLU gate, out = value * gelu_erf(gate) over [rows, 2 * inner] -> [rows, inner], instead of two
// strided narrows, gelu and a multiply. Launched by geglu.rs.
#include "common.cuh"

__device__ __forceinline__ float gelu_erf(float x) { return 0.5f * x * (1.f + erff(x * 0.70710678118654752f)); }

template <typename T>
__device__ void geglu(const T *h, T *out, uint32_t rows, uint32_t inner) {
    for (uint32_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const T *src = h + (uint64_t)r * 2 * inner;
        T *dst = out + (uint64_t)r * inner;
        for (uint32_t j = blockIdx.x * blockDim.x + threadIdx.x; j < inner; j += blockDim.x * gridDim.x) {
            dst[j] = from_f32<T>(to_f32(src[j]) * gelu_erf(to_f32(src[inner + j])));
        }
    }
}

// geglu with the projection's bias added on the way in (saves a pass over the widest activation of the UNet).
template <typename T>
__device__ void geglu_bias(const T *h, const T *bias, T *out, uint32_t rows, uint32_t inner) {
    for (uint32_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const T *src = h + (uint64_t)r * 2 * inner;
        T *dst = out + (uint64_t)r * inner;
        for (uint32_t j = blockIdx.x * blockDim.x + threadIdx.x; j < inner; j += blockDim.x * gridDim.x) {
            const float value = to_f32(src[j]) + to_f32(bias[j]);
            const float gate = to_f32(src[inner + j]) + to_f32(bias[inner + j]);
            dst[j] = from_f32<T>(value * gelu_erf(gate));
        }
    }
}

#define GEGLU_KERNELS(T, SUFFIX) \
    extern "C" __global__ void geglu_##SUFFIX(const T *h, T *out, uint32_t rows, uint32_t inner) {              \
        geglu<T>(h, out, rows, inner);                                                                          \
    }                                                                                                           \
    extern "C" __global__ void geglu_bias_##SUFFIX(const T *h, const T *bias, T *out, uint32_t rows,            \
                                                   uint32_t inner) {                                            \
        geglu_bias<T>(h, bias, out, rows, inner);                                                               \
    }

GEGLU_KERNELS(float, f32)
GEGLU_KERNELS(__half, f16)
GEGLU_KERNELS(__nv_bfloat16, bf16)
