// Launched by softmax.rs.
#include "common.cuh"

// softmax over the last dimension, one block per row (rows stride over gridDim.x): the row is read three times
// from cache (max, sum, write) and once from memory. candle's kernel gives each row a single warp, which left
// SD 1.5's 4096-long attention rows at a fifth of memory bandwidth.
template <typename T>
__device__ void softmax_rows(const T *x, T *out, uint32_t rows, uint32_t cols) {
    __shared__ float shared[32];
    for (uint32_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const T *src = x + (uint64_t)r * cols;
        T *dst = out + (uint64_t)r * cols;
        float m = -INFINITY;
        for (uint32_t j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, to_f32(src[j]));
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffff, m, o));
        if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = m;
        __syncthreads();
        if (threadIdx.x < 32) {
            float v = threadIdx.x < (blockDim.x + 31) / 32 ? shared[threadIdx.x] : -INFINITY;
            for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
            if (threadIdx.x == 0) shared[0] = v;
        }
        __syncthreads();
        m = shared[0];
        __syncthreads();
        float s = 0.f;
        for (uint32_t j = threadIdx.x; j < cols; j += blockDim.x) s += __expf(to_f32(src[j]) - m);
        const float inv = 1.f / block_sum(s, shared);
        for (uint32_t j = threadIdx.x; j < cols; j += blockDim.x) dst[j] = from_f32<T>(__expf(to_f32(src[j]) - m) * inv);
    }
}

#define SOFTMAX_KERNELS(T, SUFFIX) \
    extern "C" __global__ void softmax_##SUFFIX(const T *x, T *out, uint32_t rows, uint32_t cols) {            \
        softmax_rows<T>(x, out, rows, cols);                                                                    \
    }

SOFTMAX_KERNELS(float, f32)
SOFTMAX_KERNELS(__half, f16)
SOFTMAX_KERNELS(__nv_bfloat16, bf16)

// In-place softmax over rows of at most 256 * ITEMS elements, each row held in registers: one read and one
// write of the row, with ITEMS independent loads in flight per thread.
template <typename T, int ITEMS>
__device__ void softmax_rows_inplace(T *x, uint32_t rows, uint32_t cols) {
    __shared__ float shared[32];
    for (uint32_t r = blockIdx.x; r < rows; r += gridDim.x) {
        T *row = x + (uint64_t)r * cols;
        float v[ITEMS];
        float m = -INFINITY;
#pragma unroll
        for (int k = 0; k < ITEMS; ++k) {
            const uint32_t j = threadIdx.x + k * blockDim.x;
            v[k] = j < cols ? to_f32(row[j]) : -INFINITY;
            m = fmaxf(m, v[k]);
        }
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffff, m, o));
        if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = m;
        __syncthreads();
        if (threadIdx.x < 32) {
            float w = threadIdx.x < (blockDim.x + 31) / 32 ? shared[threadIdx.x] : -INFINITY;
            for (int o = 16; o > 0; o >>= 1) w = fmaxf(w, __shfl_xor_sync(0xffffffff, w, o));
            if (threadIdx.x == 0) shared[0] = w;
        }
        __syncthreads();
        m = shared[0];
        float s = 0.f;
#pragma unroll
        for (int k = 0; k < ITEMS; ++k) {
            v[k] = __expf(v[k] - m);  // exp(-inf) = 0 for the padding lanes
            s += v[k];
        }
        const float inv = 1.f / block_sum(s, shared);
#pragma unroll
        for (int k = 0; k < ITEMS; ++k) {
            const uint32_t j = threadIdx.x + k * blockDim.x;
            if (j < cols) row[j] = from_f32<T>(v[k] * inv);
        }
    }
}

#define SOFTMAX_INPLACE(T, SUFFIX, ITEMS)                                                                       \
    extern "C" __global__ void softmax_inplace_##ITEMS##_##SUFFIX(T *x, uint32_t rows, uint32_t cols) {        \
        softmax_rows_inplace<T, ITEMS>(x, rows, cols);                                                          \
    }
#define SOFTMAX_INPLACE_ALL(T, SUFFIX) \
    SOFTMAX_INPLACE(T, SUFFIX, 1)      \
    SOFTMAX_INPLACE(T, SUFFIX, 4)      \
    SOFTMAX_INPLACE(T, SUFFIX, 16)     \
    SOFTMAX_INPLACE(T, SUFFIX, 32)
SOFTMAX_INPLACE_ALL(float, f32)
SOFTMAX_INPLACE_ALL(__half, f16)
SOFTMAX_INPLACE_ALL(__nv_bfloat16, bf16)
