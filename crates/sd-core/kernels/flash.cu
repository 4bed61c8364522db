// Fused attention (flash-attention style) for the UNet's heads: softmax(q k^T * scale) v without writing the
// n x m scores to memory. One block of 4 warps takes 64 query rows of one (batch, head); key/value tiles of 64
// rows stream through shared memory; each warp keeps its 16 rows' running max, sum and output in shared memory
// (f32) and updates them per tile (online softmax). Products use tensor cores through WMMA (f16 or bf16 in,
// f32 accumulate); probabilities are rounded to the input type for the second product, as FlashAttention does.
// q: [bh, n, d], k/v: [bh, m, d] contiguous; out: [b, n, heads, d] (the layout the output projection reads).
// DP is the head dimension padded to a multiple of 16 (zeros beyond d); d must be a multiple of 8.
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <mma.h>
#include <stdint.h>

using namespace nvcuda;

namespace {

constexpr int BM = 64;       // query rows per block
constexpr int BN = 64;       // keys per tile
constexpr int WARPS = 4;     // 16 query rows each
constexpr int LDS = BN + 4;  // f32 scores row stride
constexpr int LDP = BN + 8;  // probabilities row stride

template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ __half from_float<__half>(float x) { return __float2half(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16(x); }

// rows x DP tile from a [len, d] matrix starting at row `first`, zero beyond `len` rows and `d` columns.
template <typename T, int DP>
__device__ __forceinline__ void load_tile(T *dst, const T *src, int first, int rows, int len, int d) {
    constexpr int LDH = DP + 8;
    constexpr int CHUNKS = DP / 8;  // 16-byte chunks per row
    for (int idx = threadIdx.x; idx < rows * CHUNKS; idx += blockDim.x) {
        const int r = idx / CHUNKS, c = (idx % CHUNKS) * 8;
        uint4 val = make_uint4(0, 0, 0, 0);
        if (first + r < len && c < d) val = *reinterpret_cast<const uint4 *>(src + (size_t)(first + r) * d + c);
        *reinterpret_cast<uint4 *>(dst + r * LDH + c) = val;
    }
}

template <typename T, int DP>
__device__ void flash_attention(const T *__restrict__ q, const T *__restrict__ k, const T *__restrict__ v,
                                T *__restrict__ out, int heads, int n, int m, int d, float scale_log2) {
    constexpr int LDH = DP + 8;
    constexpr int LDO = DP + 4;
    extern __shared__ __align__(128) unsigned char smem[];
    T *sQ = reinterpret_cast<T *>(smem);
    T *sK = sQ + BM * LDH;
    T *sV = sK + BN * LDH;
    float *sS = reinterpret_cast<float *>(sV + BN * LDH);
    T *sP = reinterpret_cast<T *>(sS + WARPS * 16 * LDS);
    float *sO = reinterpret_cast<float *>(sP + WARPS * 16 * LDP);
    float *sM = sO + WARPS * 16 * LDO;
    float *sL = sM + WARPS * 16;

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int bh = blockIdx.y;
    const int q0 = blockIdx.x * BM;
    const T *qb = q + (size_t)bh * n * d;
    const T *kb = k + (size_t)bh * m * d;
    const T *vb = v + (size_t)bh * m * d;

    load_tile<T, DP>(sQ, qb, q0, BM, n, d);
    float *wS = sS + warp * 16 * LDS;
    T *wP = sP + warp * 16 * LDP;
    float *wO = sO + warp * 16 * LDO;
    for (int i = lane; i < 16 * LDO; i += 32) wO[i] = 0.f;
    if (lane < 16) {
        sM[warp * 16 + lane] = -INFINITY;
        sL[warp * 16 + lane] = 0.f;
    }
    // Each row is owned by a pair of lanes, each taking half of the tile's columns.
    const int row = lane >> 1, half_cols = lane & 1;

    for (int k0 = 0; k0 < m; k0 += BN) {
        __syncthreads();  // the previous tiles are no longer read
        load_tile<T, DP>(sK, kb, k0, BN, m, d);
        load_tile<T, DP>(sV, vb, k0, BN, m, d);
        __syncthreads();

        // S = Q_w K^T (16 x 64), f32.
#pragma unroll
        for (int j = 0; j < BN / 16; ++j) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.f);
#pragma unroll
            for (int kk = 0; kk < DP / 16; ++kk) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b;
                wmma::load_matrix_sync(a, sQ + warp * 16 * LDH + kk * 16, LDH);
                wmma::load_matrix_sync(b, sK + j * 16 * LDH + kk * 16, LDH);
                wmma::mma_sync(acc, a, b, acc);
            }
            wmma::store_matrix_sync(wS + j * 16, acc, LDS, wmma::mem_row_major);
        }
        __syncwarp();

        // Online softmax on this lane's half row (log2 domain).
        const int valid = min(BN, m - k0);
        float s[BN / 2];
        float tile_max = -INFINITY;
#pragma unroll
        for (int c = 0; c < BN / 2; ++c) {
            const int col = half_cols * (BN / 2) + c;
            s[c] = col < valid ? wS[row * LDS + col] * scale_log2 : -INFINITY;
            tile_max = fmaxf(tile_max, s[c]);
        }
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffff, tile_max, 1));
        const float m_old = sM[warp * 16 + row];
        const float m_new = fmaxf(m_old, tile_max);
        float sum = 0.f;
#pragma unroll
        for (int c = 0; c < BN / 2; ++c) {
            const float p = exp2f(s[c] - m_new);
            sum += p;
            wP[row * LDP + half_cols * (BN / 2) + c] = from_float<T>(p);
        }
        sum += __shfl_xor_sync(0xffffffff, sum, 1);
        const float alpha = exp2f(m_old - m_new);
        for (int c = half_cols; c < DP; c += 2) wO[row * LDO + c] *= alpha;
        __syncwarp();
        if (half_cols == 0) {
            sM[warp * 16 + row] = m_new;
            sL[warp * 16 + row] = sL[warp * 16 + row] * alpha + sum;
        }
        __syncwarp();

        // O_w += P V (16 x DP).
#pragma unroll
        for (int t = 0; t < DP / 16; ++t) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::load_matrix_sync(acc, wO + t * 16, LDO, wmma::mem_row_major);
#pragma unroll
            for (int kk = 0; kk < BN / 16; ++kk) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b;
                wmma::load_matrix_sync(a, wP + kk * 16, LDP);
                wmma::load_matrix_sync(b, sV + kk * 16 * LDH + t * 16, LDH);
                wmma::mma_sync(acc, a, b, acc);
            }
            wmma::store_matrix_sync(wO + t * 16, acc, LDO, wmma::mem_row_major);
        }
        __syncwarp();
    }

    // out[b, i, h, :] = O / l
    const int i = q0 + warp * 16 + row;
    if (i < n) {
        const float inv = 1.f / sL[warp * 16 + row];
        const int b = bh / heads, h = bh % heads;
        T *dst = out + (((size_t)b * n + i) * heads + h) * d;
        for (int c = half_cols; c < d; c += 2) dst[c] = from_float<T>(wO[row * LDO + c] * inv);
    }
}

}  // namespace

#define FLASH(T, SUFFIX, DP)                                                                                   \
    extern "C" __global__ void __launch_bounds__(128) flash_attn_d##DP##_##SUFFIX(                              \
        const T *q, const T *k, const T *v, T *out, int heads, int n, int m, int d, float scale_log2) {       \
        flash_attention<T, DP>(q, k, v, out, heads, n, m, d, scale_log2);                                     \
    }
#define FLASH_ALL(DP) FLASH(__half, f16, DP) FLASH(__nv_bfloat16, bf16, DP)
FLASH_ALL(48)
FLASH_ALL(64)
FLASH_ALL(80)
FLASH_ALL(128)
FLASH_ALL(160)
