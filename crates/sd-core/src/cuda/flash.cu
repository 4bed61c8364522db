// Fused attention (FlashAttention-2 style) for the UNet's heads: softmax(q k^T * scale) v without writing the
// n x m scores to memory. A block of 4 warps takes BM query rows of one (batch, head); each warp owns 16 * MT
// of them and keeps their scores, running max/sum and output in registers (online softmax). Key/value tiles
// of 64 rows are copied into shared memory with cp.async, the next tile while the current one is used.
// Products run on tensor cores through mma.sync m16n8k16 (f16 or bf16 in, f32 accumulate), operands come
// from shared memory through ldmatrix; probabilities are rounded to the input type for the second product,
// as FlashAttention does.
//
// q, k, v are read in the layout linear projections write: row i of (batch b, head h) starts at
// base + b * batch_stride + i * row_stride + h * d, so q/k/v can be views into one fused projection output.
// out is [b, n, heads * d] contiguous (the layout the output projection reads). DP is the head dimension
// padded to a multiple of 16 (zeros beyond d); d, strides and offsets must be multiples of 8 elements.
// Built for an older GPU the kernels are empty; the host side never launches them there.
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <stdint.h>

namespace {

constexpr int WARPS = 4;
constexpr int BN = 64;  // keys per tile

template <typename T> struct Mma;
template <> struct Mma<__half> {
    static __device__ __forceinline__ void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
        __half2 h = __floats2half2_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&h);
    }
};
template <> struct Mma<__nv_bfloat16> {
    static __device__ __forceinline__ void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
        __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&h);
    }
};

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void *p) {
    const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const void *p) {
    const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

// 16 bytes global -> shared; zero-filled (nothing read) when !valid.
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid) {
    const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
    const int bytes = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// rows x DP tile (row stride DP + 8 in shared memory) from rows [first, first + rows) of a strided matrix;
// zeros beyond `len` rows and `d` columns.
template <typename T, int DP>
__device__ __forceinline__ void load_tile(T *dst, const T *src, long long row_stride, int first, int rows, int len,
                                          int d) {
    constexpr int LDH = DP + 8;
    constexpr int CHUNKS = DP / 8;
    for (int idx = threadIdx.x; idx < rows * CHUNKS; idx += WARPS * 32) {
        const int r = idx / CHUNKS, c = (idx % CHUNKS) * 8;
        const bool valid = first + r < len && c < d;
        const T *s = valid ? src + (first + r) * row_stride + c : src;
        cp_async16(dst + r * LDH + c, s, valid);
    }
}

template <typename T, int DP, int MT>
__device__ void flash_attention(const T *__restrict__ q, const T *__restrict__ k, const T *__restrict__ v,
                                T *__restrict__ out, int heads, int n, int m, int d, long long q_batch,
                                long long q_row, long long k_batch, long long k_row, long long v_batch,
                                long long v_row, float scale_log2) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800  // mma.sync m16n8k16, cp.async: Ampere and later only
    constexpr int LDH = DP + 8;
    constexpr int BM = 16 * MT * WARPS;
    constexpr int TILE = BN * LDH;
    constexpr int KT = DP / 16;  // k-steps over the head dimension
    constexpr int NT = BN / 8;   // 8-key score tiles
    constexpr int DT = DP / 8;   // 8-wide output tiles
    static_assert(BM <= 2 * BN, "the query tile is staged in the second key/value stage");
    extern __shared__ __align__(128) unsigned char smem_raw[];
    T *smem = reinterpret_cast<T *>(smem_raw);
    // Stage s holds a key tile at s * 2 * TILE and its value tile right after it.
    T *const sQ = smem + 2 * TILE;

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane >> 2, tq = lane & 3;
    const int bh = blockIdx.y, b = bh / heads, h = bh % heads;
    const int q0 = blockIdx.x * BM;
    const T *qb = q + b * q_batch + (long long)h * d;
    const T *kb = k + b * k_batch + (long long)h * d;
    const T *vb = v + b * v_batch + (long long)h * d;

    load_tile<T, DP>(sQ, qb, q_row, q0, BM, n, d);
    load_tile<T, DP>(smem, kb, k_row, 0, BN, m, d);
    load_tile<T, DP>(smem + TILE, vb, v_row, 0, BN, m, d);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();

    uint32_t qf[MT][KT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int kk = 0; kk < KT; ++kk)
            ldsm_x4(qf[mt][kk], sQ + ((warp * MT + mt) * 16 + (lane & 15)) * LDH + kk * 16 + (lane >> 4) * 8);
    __syncthreads();  // the second stage is free for key/value tiles

    float o[MT][DT][4];
    float row_max[MT][2], row_sum[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int j = 0; j < DT; ++j) o[mt][j][0] = o[mt][j][1] = o[mt][j][2] = o[mt][j][3] = 0.f;
        row_max[mt][0] = row_max[mt][1] = -INFINITY;
        row_sum[mt][0] = row_sum[mt][1] = 0.f;
    }

    const int tiles = (m + BN - 1) / BN;
    for (int t = 0; t < tiles; ++t) {
        const T *sK = smem + (t & 1) * 2 * TILE;
        const T *sV = sK + TILE;
        if (t + 1 < tiles) {
            T *next = smem + ((t + 1) & 1) * 2 * TILE;
            load_tile<T, DP>(next, kb, k_row, (t + 1) * BN, BN, m, d);
            load_tile<T, DP>(next + TILE, vb, v_row, (t + 1) * BN, BN, m, d);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();

        // S = Q K^T for this warp's rows and the tile's 64 keys.
        float s[MT][NT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int j = 0; j < NT; ++j) s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < KT; ++kk) {
#pragma unroll
            for (int np = 0; np < NT / 2; ++np) {
                uint32_t kf[4];
                ldsm_x4(kf, sK + (np * 16 + (lane & 7) + (lane >> 4) * 8) * LDH + kk * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    Mma<T>::run(s[mt][2 * np], qf[mt][kk], kf[0], kf[1]);
                    Mma<T>::run(s[mt][2 * np + 1], qf[mt][kk], kf[2], kf[3]);
                }
            }
        }

        // Online softmax in the log2 domain; a row's values are spread over the 4 lanes of a quad.
        const int valid = m - t * BN;
        uint32_t pf[MT][NT / 2][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
            float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
            for (int j = 0; j < NT; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int col = j * 8 + tq * 2 + (e & 1);
                    const float x = col < valid ? s[mt][j][e] * scale_log2 : -INFINITY;
                    s[mt][j][e] = x;
                    tile_max[e >> 1] = fmaxf(tile_max[e >> 1], x);
                }
            float alpha[2];
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffff, tile_max[r], 1));
                tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffff, tile_max[r], 2));
                const float new_max = fmaxf(row_max[mt][r], tile_max[r]);
                alpha[r] = exp2f(row_max[mt][r] - new_max);
                row_max[mt][r] = new_max;
                row_sum[mt][r] *= alpha[r];
            }
#pragma unroll
            for (int j = 0; j < NT; ++j) {
                float p[4];
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    p[e] = exp2f(s[mt][j][e] - row_max[mt][e >> 1]);
                    row_sum[mt][e >> 1] += p[e];
                }
                // The accumulator layout of two adjacent 8-key tiles is the A-operand layout of one 16-key step.
                pf[mt][j / 2][(j & 1) * 2 + 0] = Mma<T>::pack(p[0], p[1]);
                pf[mt][j / 2][(j & 1) * 2 + 1] = Mma<T>::pack(p[2], p[3]);
            }
#pragma unroll
            for (int j = 0; j < DT; ++j) {
                o[mt][j][0] *= alpha[0];
                o[mt][j][1] *= alpha[0];
                o[mt][j][2] *= alpha[1];
                o[mt][j][3] *= alpha[1];
            }
        }

        // O += P V.
#pragma unroll
        for (int kk = 0; kk < NT / 2; ++kk) {
#pragma unroll
            for (int dp = 0; dp < DT / 2; ++dp) {
                uint32_t vf[4];
                ldsm_x4_trans(vf, sV + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LDH + dp * 16 + (lane >> 4) * 8);
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    Mma<T>::run(o[mt][2 * dp], pf[mt][kk], vf[0], vf[1]);
                    Mma<T>::run(o[mt][2 * dp + 1], pf[mt][kk], vf[2], vf[3]);
                }
            }
        }
        __syncthreads();  // this stage is refilled two tiles on
    }

    // out[b, i, h, :] = O / l
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float l = row_sum[mt][r];
            l += __shfl_xor_sync(0xffffffff, l, 1);
            l += __shfl_xor_sync(0xffffffff, l, 2);
            const float inv = 1.f / l;
            const int i = q0 + (warp * MT + mt) * 16 + g + r * 8;
            if (i < n) {
                T *dst = out + ((long long)b * n + i) * heads * d + (long long)h * d;
#pragma unroll
                for (int j = 0; j < DT; ++j) {
                    const int c = j * 8 + tq * 2;
                    if (c < d)
                        *reinterpret_cast<uint32_t *>(dst + c) =
                            Mma<T>::pack(o[mt][j][2 * r] * inv, o[mt][j][2 * r + 1] * inv);
                }
            }
        }
#endif
}

}  // namespace

// MT = 2 (128 query rows per block) where the registers allow it, 1 for the wide heads.
#define FLASH(T, SUFFIX, DP, MT)                                                                               \
    extern "C" __global__ void __launch_bounds__(WARPS * 32) flash_attn_d##DP##_##SUFFIX(                       \
        const T *q, const T *k, const T *v, T *out, int heads, int n, int m, int d, long long q_batch,        \
        long long q_row, long long k_batch, long long k_row, long long v_batch, long long v_row,              \
        float scale_log2) {                                                                                   \
        flash_attention<T, DP, MT>(q, k, v, out, heads, n, m, d, q_batch, q_row, k_batch, k_row, v_batch,     \
                                   v_row, scale_log2);                                                        \
    }
#define FLASH_ALL(DP, MT) FLASH(__half, f16, DP, MT) FLASH(__nv_bfloat16, bf16, DP, MT)
FLASH_ALL(48, 2)
FLASH_ALL(64, 2)
FLASH_ALL(80, 1)
FLASH_ALL(128, 1)
FLASH_ALL(160, 1)
