// Fused kernels for the CUDA build (compiled to PTX by build.rs, loaded through candle's custom-module cache).
//
// group_norm_*: GroupNorm(+SiLU) over contiguous [B, C, spatial...] tensors in three passes that each touch the
//   data once: per-chunk statistics (mean and M2 of a slice of one group), the combination of those chunks
//   (Chan's parallel variance, numerically safe where sum-of-squares is not), and the normalisation itself.
//   candle-nn's GroupNorm launches a dozen kernels with f32 temporaries the size of the input.
// geglu_*: diffusers' GEGLU gate, out = value * gelu_erf(gate) over [rows, 2 * inner] -> [rows, inner], instead
//   of two strided narrows, gelu and a multiply.
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <stdint.h>

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16(x); }

// Block-wide sum; every thread gets the result. `shared` holds at least 32 floats.
__device__ __forceinline__ float block_sum(float v, float *shared) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    const int warps = (blockDim.x + 31) >> 5;
    v = (threadIdx.x < warps) ? shared[threadIdx.x] : 0.f;
    if (warp == 0) {
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
        if (lane == 0) shared[0] = v;
    }
    __syncthreads();
    const float r = shared[0];
    __syncthreads();
    return r;
}

// Pass 1. grid = (chunks, groups_total); each block reduces x[g * n + chunk range] to (mean, M2).
// stats[(g * chunks + c) * 2 + {0, 1}].
template <typename T>
__device__ void gn_stats(const T *x, float *stats, uint64_t n, uint32_t chunk) {
    __shared__ float shared[32];
    const uint64_t g = blockIdx.y, c = blockIdx.x, chunks = gridDim.x;
    const uint64_t begin = c * chunk;
    const uint64_t end = min(begin + (uint64_t)chunk, n);
    const T *base = x + g * n;
    float sum = 0.f;
    for (uint64_t i = begin + threadIdx.x; i < end; i += blockDim.x) sum += to_f32(base[i]);
    const float count = (float)(end > begin ? end - begin : 0);
    const float mean = count > 0.f ? block_sum(sum, shared) / count : 0.f;
    float m2 = 0.f;
    for (uint64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
        const float d = to_f32(base[i]) - mean;
        m2 += d * d;
    }
    m2 = count > 0.f ? block_sum(m2, shared) : 0.f;
    if (threadIdx.x == 0) {
        stats[(g * chunks + c) * 2] = mean;
        stats[(g * chunks + c) * 2 + 1] = m2;
    }
}

// Pass 2. One thread per group: Chan's combination of the chunks -> (mean, 1 / sqrt(var + eps)) in place of
// chunk 0's slot.
__device__ void gn_combine(float *stats, uint32_t groups_total, uint32_t chunks, uint64_t n, uint32_t chunk,
                           float eps) {
    const uint32_t g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= groups_total) return;
    float *s = stats + (uint64_t)g * chunks * 2;
    double count = 0.0, mean = 0.0, m2 = 0.0;
    for (uint32_t c = 0; c < chunks; ++c) {
        const uint64_t begin = (uint64_t)c * chunk;
        const uint64_t end = min(begin + (uint64_t)chunk, n);
        if (end <= begin) break;
        const double nb = (double)(end - begin), mb = s[2 * c], m2b = s[2 * c + 1];
        const double total = count + nb;
        const double delta = mb - mean;
        mean += delta * nb / total;
        m2 += m2b + delta * delta * count * nb / total;
        count = total;
    }
    const double var = m2 / count;  // biased, as torch's group_norm
    s[0] = (float)mean;
    s[1] = (float)(1.0 / sqrt(var + (double)eps));
}

// Pass 3. blockIdx.y strides over rows (b * channels + c), blockIdx.x/threadIdx.x over the row's spatial
// elements: no 64-bit division per element.
template <typename T>
__device__ void gn_apply(const T *x, const float *stats, const T *weight, const T *bias, T *out, uint32_t rows,
                         uint32_t spatial, uint32_t channels, uint32_t groups, uint32_t chunks, int silu) {
    const uint32_t per_group = channels / groups;
    for (uint32_t row = blockIdx.y; row < rows; row += gridDim.y) {
        const uint32_t c = row % channels;
        const uint64_t g = (uint64_t)(row / channels) * groups + c / per_group;
        const float mean = stats[g * chunks * 2], rstd = stats[g * chunks * 2 + 1];
        const float scale = rstd * to_f32(weight[c]);
        const float shift = to_f32(bias[c]) - mean * scale;
        const T *src = x + (uint64_t)row * spatial;
        T *dst = out + (uint64_t)row * spatial;
        for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < spatial; i += blockDim.x * gridDim.x) {
            float y = to_f32(src[i]) * scale + shift;
            if (silu) y = y / (1.f + __expf(-y));
            dst[i] = from_f32<T>(y);
        }
    }
}

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

extern "C" __global__ void group_norm_combine(float *stats, uint32_t groups_total, uint32_t chunks, uint64_t n,
                                              uint32_t chunk, float eps) {
    gn_combine(stats, groups_total, chunks, n, chunk, eps);
}

#define GN_KERNELS(T, SUFFIX)                                                                                   \
    extern "C" __global__ void group_norm_stats_##SUFFIX(const T *x, float *stats, uint64_t n, uint32_t chunk) { \
        gn_stats<T>(x, stats, n, chunk);                                                                        \
    }                                                                                                           \
    extern "C" __global__ void group_norm_apply_##SUFFIX(const T *x, const float *stats, const T *weight,       \
                                                         const T *bias, T *out, uint32_t rows,                  \
                                                         uint32_t spatial, uint32_t channels, uint32_t groups,  \
                                                         uint32_t chunks, int silu) {                            \
        gn_apply<T>(x, stats, weight, bias, out, rows, spatial, channels, groups, chunks, silu);               \
    }                                                                                                           \
    extern "C" __global__ void geglu_##SUFFIX(const T *h, T *out, uint32_t rows, uint32_t inner) {              \
        geglu<T>(h, out, rows, inner);                                                                          \
    }                                                                                                           \
    extern "C" __global__ void geglu_bias_##SUFFIX(const T *h, const T *bias, T *out, uint32_t rows,            \
                                                   uint32_t inner) {                                            \
        geglu_bias<T>(h, bias, out, rows, inner);                                                               \
    }

GN_KERNELS(float, f32)
GN_KERNELS(__half, f16)
GN_KERNELS(__nv_bfloat16, bf16)

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

// Bias adds with the row/column split done by the grid instead of per-element divisions:
// bias_channels: x is [rows, inner] where row r takes bias[r % channels] (NCHW conv output: rows = n * c).
// bias_columns: x is [rows, cols] where column j takes bias[j] (a linear layer's output).
template <typename T>
__device__ void bias_channels(const T *x, const T *bias, T *out, uint32_t rows, uint32_t inner, uint32_t channels) {
    for (uint32_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const float b = to_f32(bias[r % channels]);
        const T *src = x + (uint64_t)r * inner;
        T *dst = out + (uint64_t)r * inner;
        for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < inner; i += blockDim.x * gridDim.x)
            dst[i] = from_f32<T>(to_f32(src[i]) + b);
    }
}

template <typename T>
__device__ void bias_columns(const T *x, const T *bias, T *out, uint32_t rows, uint32_t cols) {
    for (uint32_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const T *src = x + (uint64_t)r * cols;
        T *dst = out + (uint64_t)r * cols;
        for (uint32_t j = blockIdx.x * blockDim.x + threadIdx.x; j < cols; j += blockDim.x * gridDim.x)
            dst[j] = from_f32<T>(to_f32(src[j]) + to_f32(bias[j]));
    }
}

// The same two bias adds with a residual added in the same pass (a layer's output joining the skip path).
template <typename T>
__device__ void bias_channels_residual(const T *x, const T *bias, const T *res, T *out, uint32_t rows,
                                       uint32_t inner, uint32_t channels) {
    for (uint32_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const float b = to_f32(bias[r % channels]);
        const uint64_t base = (uint64_t)r * inner;
        for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < inner; i += blockDim.x * gridDim.x)
            out[base + i] = from_f32<T>(to_f32(x[base + i]) + b + to_f32(res[base + i]));
    }
}

template <typename T>
__device__ void bias_columns_residual(const T *x, const T *bias, const T *res, T *out, uint32_t rows,
                                      uint32_t cols) {
    for (uint32_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const uint64_t base = (uint64_t)r * cols;
        for (uint32_t j = blockIdx.x * blockDim.x + threadIdx.x; j < cols; j += blockDim.x * gridDim.x)
            out[base + j] = from_f32<T>(to_f32(x[base + j]) + to_f32(bias[j]) + to_f32(res[base + j]));
    }
}

#define ROW_KERNELS(T, SUFFIX)                                                                                   \
    extern "C" __global__ void softmax_##SUFFIX(const T *x, T *out, uint32_t rows, uint32_t cols) {            \
        softmax_rows<T>(x, out, rows, cols);                                                                    \
    }                                                                                                           \
    extern "C" __global__ void bias_channels_##SUFFIX(const T *x, const T *bias, T *out, uint32_t rows,         \
                                                      uint32_t inner, uint32_t channels) {                      \
        bias_channels<T>(x, bias, out, rows, inner, channels);                                                  \
    }                                                                                                           \
    extern "C" __global__ void bias_columns_##SUFFIX(const T *x, const T *bias, T *out, uint32_t rows,          \
                                                     uint32_t cols) {                                           \
        bias_columns<T>(x, bias, out, rows, cols);                                                              \
    }                                                                                                           \
    extern "C" __global__ void bias_channels_residual_##SUFFIX(const T *x, const T *bias, const T *res, T *out, \
                                                               uint32_t rows, uint32_t inner,                   \
                                                               uint32_t channels) {                             \
        bias_channels_residual<T>(x, bias, res, out, rows, inner, channels);                                    \
    }                                                                                                           \
    extern "C" __global__ void bias_columns_residual_##SUFFIX(const T *x, const T *bias, const T *res, T *out,  \
                                                              uint32_t rows, uint32_t cols) {                   \
        bias_columns_residual<T>(x, bias, res, out, rows, cols);                                                \
    }

ROW_KERNELS(float, f32)
ROW_KERNELS(__half, f16)
ROW_KERNELS(__nv_bfloat16, bf16)

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

// LayerNorm over the last dimension (the transformer blocks' norm1/2/3), one warp per row with the row in
// registers, read and written with 16-byte loads and stores: each lane holds VPL vectors of a row (cols a
// multiple of the vector width, rows and parameters 16-byte aligned). Mean and variance come from the registers
// (two passes, no cancellation). candle's kernel, and a first scalar version of this one, reached a fifth and a
// sixth of memory bandwidth on SDXL's rows.
template <typename T, int VPL>
__device__ void layer_norm_vec_rows(const T *x, const T *weight, const T *bias, T *out, uint32_t rows,
                                    uint32_t cols, float eps) {
    constexpr int E = 16 / sizeof(T);
    const uint32_t lane = threadIdx.x & 31;
    const uint32_t warps = blockDim.x >> 5;
    const uint32_t vecs = cols / E;
    const uint4 *w4 = reinterpret_cast<const uint4 *>(weight);
    const uint4 *b4 = reinterpret_cast<const uint4 *>(bias);
    for (uint32_t r = blockIdx.x * warps + (threadIdx.x >> 5); r < rows; r += gridDim.x * warps) {
        const uint4 *src = reinterpret_cast<const uint4 *>(x + (uint64_t)r * cols);
        float v[VPL][E];
        float sum = 0.f;
#pragma unroll
        for (int k = 0; k < VPL; ++k) {
            const uint32_t j = lane + k * 32;
            uint4 raw = make_uint4(0, 0, 0, 0);
            if (j < vecs) raw = src[j];
            const T *e = reinterpret_cast<const T *>(&raw);
#pragma unroll
            for (int i = 0; i < E; ++i) {
                v[k][i] = to_f32(e[i]);
                sum += v[k][i];
            }
        }
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffff, sum, o);
        const float mean = sum / cols;
        float var = 0.f;
#pragma unroll
        for (int k = 0; k < VPL; ++k) {
            const bool in_row = lane + k * 32 < vecs;
#pragma unroll
            for (int i = 0; i < E; ++i) {
                const float d = in_row ? v[k][i] - mean : 0.f;
                var += d * d;
            }
        }
        for (int o = 16; o > 0; o >>= 1) var += __shfl_xor_sync(0xffffffff, var, o);
        const float rstd = rsqrtf(var / cols + eps);
        uint4 *dst = reinterpret_cast<uint4 *>(out + (uint64_t)r * cols);
#pragma unroll
        for (int k = 0; k < VPL; ++k) {
            const uint32_t j = lane + k * 32;
            if (j >= vecs) continue;
            const uint4 wr = w4[j], br = b4[j];
            const T *we = reinterpret_cast<const T *>(&wr);
            const T *be = reinterpret_cast<const T *>(&br);
            uint4 res;
            T *re = reinterpret_cast<T *>(&res);
#pragma unroll
            for (int i = 0; i < E; ++i) re[i] = from_f32<T>((v[k][i] - mean) * rstd * to_f32(we[i]) + to_f32(be[i]));
            dst[j] = res;
        }
    }
}

#define LAYER_NORM_VEC(T, SUFFIX, VPL)                                                                         \
    extern "C" __global__ void layer_norm_vec##VPL##_##SUFFIX(const T *x, const T *w, const T *b, T *out,      \
                                                              uint32_t rows, uint32_t cols, float eps) {        \
        layer_norm_vec_rows<T, VPL>(x, w, b, out, rows, cols, eps);                                             \
    }
#define LAYER_NORM_VEC_ALL(T, SUFFIX) \
    LAYER_NORM_VEC(T, SUFFIX, 1)      \
    LAYER_NORM_VEC(T, SUFFIX, 2)      \
    LAYER_NORM_VEC(T, SUFFIX, 3)      \
    LAYER_NORM_VEC(T, SUFFIX, 4)      \
    LAYER_NORM_VEC(T, SUFFIX, 5)      \
    LAYER_NORM_VEC(T, SUFFIX, 6)      \
    LAYER_NORM_VEC(T, SUFFIX, 8)      \
    LAYER_NORM_VEC(T, SUFFIX, 10)     \
    LAYER_NORM_VEC(T, SUFFIX, 12)     \
    LAYER_NORM_VEC(T, SUFFIX, 16)
LAYER_NORM_VEC_ALL(float, f32)
LAYER_NORM_VEC_ALL(__half, f16)
LAYER_NORM_VEC_ALL(__nv_bfloat16, bf16)
