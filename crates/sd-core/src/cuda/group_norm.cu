// GroupNorm(+SiLU) over contiguous [B, C, spatial...] tensors in three passes that each touch the data once:
// per-chunk statistics (mean and M2 of a slice of one group), the combination of those chunks (Chan's parallel
// variance, numerically safe where sum-of-squares is not), and the normalisation itself. candle-nn's GroupNorm
// launches a dozen kernels with f32 temporaries the size of the input. Launched by group_norm.rs.
#include "common.cuh"

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
    }

GN_KERNELS(float, f32)
GN_KERNELS(__half, f16)
GN_KERNELS(__nv_bfloat16, bf16)
