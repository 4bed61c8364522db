//! 2-D convolution (`weight`, optional `bias`) like candle-nn's. On CUDA a 1x1 kernel is one batched matrix
//! product over NCHW as it lies, others go to cuDNN in `cudnn` builds (within the options' scratch limit), and
//! the bias add (with an optional residual) is fused into the output's own memory.

use candle_core::{Module, Tensor};
use candle_nn::Conv2dConfig;

use super::{KernelOptions, Path};

#[derive(Clone, Debug)]
pub struct Conv2d {
    plain: candle_nn::Conv2d,
    #[cfg_attr(not(feature = "cudnn"), allow(dead_code))]
    options: KernelOptions,
}

impl Conv2d {
    pub fn new(
        weight: Tensor,
        bias: Option<Tensor>,
        cfg: Conv2dConfig,
        options: KernelOptions,
    ) -> Self {
        Self {
            plain: candle_nn::Conv2d::new(weight, bias, cfg),
            options,
        }
    }

    /// The `[out, in, k, k]` weight (shared storage: LoRAs are merged into it in place).
    pub fn weight(&self) -> &Tensor {
        self.plain.weight()
    }

    /// `conv(x) + residual`, on CUDA with the bias and the residual added in one pass.
    pub fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        #[cfg(feature = "cuda")]
        if let (Path::Cuda, Some(b)) = (Path::of(x), self.plain.bias()) {
            if self.plain.config().groups == 1 {
                let y = self.convolve_cuda(x)?;
                return crate::cuda::add_bias_channels_owned(y, b, Some(residual));
            }
        }
        if let Some(params) = self.cpu_params(x) {
            let (w, b) = (self.plain.weight(), self.plain.bias());
            return crate::cpu::conv::conv2d(x, w, b, Some(residual), params);
        }
        self.forward(x)? + residual
    }

    /// The CPU kernel's parameters where it applies (f32 on the CPU, one group, no dilation).
    fn cpu_params(&self, x: &Tensor) -> Option<crate::cpu::conv::ConvParams> {
        let cfg = self.plain.config();
        (crate::cpu::applies(x) && cfg.groups == 1 && cfg.dilation == 1).then_some(
            crate::cpu::conv::ConvParams {
                padding: cfg.padding,
                stride: cfg.stride,
            },
        )
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match Path::of(x) {
            #[cfg(feature = "cuda")]
            Path::Cuda if self.plain.config().groups == 1 => {
                let y = self.convolve_cuda(x)?;
                match self.plain.bias() {
                    Some(b) => crate::cuda::add_bias_channels_owned(y, b, None),
                    None => Ok(y),
                }
            }
            Path::Cpu => match self.cpu_params(x) {
                Some(params) => {
                    let (w, b) = (self.plain.weight(), self.plain.bias());
                    crate::cpu::conv::conv2d(x, w, b, None, params)
                }
                None => self.plain.forward(x),
            },
            _ => self.plain.forward(x),
        }
    }
}

#[cfg(feature = "cuda")]
impl Conv2d {
    /// The convolution without bias: a 1x1 kernel is one batched matrix product over NCHW as it lies (no
    /// layout change, no im2col); others go to cuDNN in `cudnn` builds and to candle otherwise.
    fn convolve_cuda(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let cfg = self.plain.config();
        let w = self.plain.weight();
        let (cout, cin, kh, kw) = w.dims4()?;
        let (n, _, h, wd) = x.dims4()?;
        if (kh, kw) == (1, 1) && cfg.padding == 0 && cfg.stride == 1 {
            let w = w.reshape((cout, cin))?.broadcast_left(n)?;
            let y = w.matmul(&x.contiguous()?.reshape((n, cin, h * wd))?)?;
            return y.reshape((n, cout, h, wd));
        }
        #[cfg(feature = "cudnn")]
        {
            let params = crate::cuda::cudnn_conv::ConvParams {
                padding: cfg.padding,
                stride: cfg.stride,
                dilation: cfg.dilation,
                workspace_limit: self.options.conv_workspace_limit,
            };
            crate::cuda::cudnn_conv::conv2d(x, w, params)
        }
        #[cfg(not(feature = "cudnn"))]
        x.conv2d(w, cfg.padding, cfg.stride, cfg.dilation, 1)
    }
}

/// Reads `weight` `[out, in, k, k]` and `bias` `[out]`, as `candle_nn::conv2d`.
pub fn conv2d(
    in_channels: usize,
    out_channels: usize,
    kernel_size: usize,
    cfg: Conv2dConfig,
    vb: candle_nn::VarBuilder,
    options: KernelOptions,
) -> candle_core::Result<Conv2d> {
    let plain = candle_nn::conv2d(in_channels, out_channels, kernel_size, cfg, vb)?;
    Ok(Conv2d { plain, options })
}
