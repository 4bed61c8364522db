// Launched by bias.rs.
#include "common.cuh"

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

#define BIAS_KERNELS(T, SUFFIX) \
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

BIAS_KERNELS(float, f32)
BIAS_KERNELS(__half, f16)
BIAS_KERNELS(__nv_bfloat16, bf16)
