// Launched by layer_norm.rs.
#include "common.cuh"

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
