//! Launches bias.cu: per-channel (NCHW) and per-column bias adds, with an optional residual, to a new tensor or
//! into the input's own memory.
#![allow(unsafe_code)] // kernel launches are FFI; every launch below states why its arguments are in bounds.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, DeviceRepr, PushKernelArg};
use candle_core::cuda_backend::{kernel_name, Map2, Map3, WrapErr};
use candle_core::{CudaDevice, CudaStorage, Layout, Tensor, WithDType};

use super::{contiguous_view, grid_for};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/bias.ptx"));
const MODULE: &str = "sd_core_bias";

/// `x` `[n, c, ...]` plus `bias[c]` broadcast over the trailing dimensions.
pub fn add_bias_channels(x: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
    let bias = bias.to_dtype(x.dtype())?.contiguous()?;
    x.contiguous()?.apply_op2_no_bwd(&bias, &BiasAdd::Channels)
}

/// [`add_bias_channels`] plus `residual` (the shape of `x`) in the same pass.
pub fn add_bias_channels_residual(
    x: &Tensor,
    bias: &Tensor,
    residual: &Tensor,
) -> candle_core::Result<Tensor> {
    let bias = bias.to_dtype(x.dtype())?.contiguous()?;
    let residual = residual.to_dtype(x.dtype())?.contiguous()?;
    x.contiguous()?
        .apply_op3_no_bwd(&bias, &residual, &BiasAddResidual(BiasAdd::Channels))
}

/// [`add_bias_channels`] (plus `residual` if given) written into `x` itself, for fresh outputs such as a
/// convolution's that no other tensor shares: no second tensor of the output's size exists even for a moment
/// (at VAE resolutions that is 64-128 MiB at the peak).
pub fn add_bias_channels_owned(
    x: Tensor,
    bias: &Tensor,
    residual: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    if !x.is_contiguous() {
        return match residual {
            Some(r) => add_bias_channels_residual(&x, bias, r),
            None => add_bias_channels(&x, bias),
        };
    }
    let bias = bias.to_dtype(x.dtype())?.contiguous()?;
    match residual {
        Some(r) => {
            let r = r.to_dtype(x.dtype())?.contiguous()?;
            x.inplace_op3(&bias, &r, &InPlaceBias(BiasAdd::Channels))?
        }
        None => x.inplace_op2(&bias, &InPlaceBias(BiasAdd::Channels))?,
    }
    Ok(x)
}

/// A bias add (with an optional residual) into the input's own memory; see [`add_bias_channels_owned`].
struct InPlaceBias(BiasAdd);

impl InPlaceBias {
    fn run<T: DeviceRepr + WithDType>(
        &self,
        x: &mut CudaSlice<T>,
        x_l: &Layout,
        b: &CudaSlice<T>,
        b_l: &Layout,
        residual: Option<(&CudaSlice<T>, &Layout)>,
        dev: &CudaDevice,
    ) -> candle_core::Result<()> {
        use candle_core::cuda_backend::cudarc::driver::DevicePtr;
        let Some((start, end)) = x_l.contiguous_offsets() else {
            candle_core::bail!("in-place bias add: input must be contiguous");
        };
        let b = contiguous_view(b, b_l, "bias")?;
        let (rows, inner, name) = self.0.geometry(x_l, b_l.shape().elem_count())?;
        let residual = match residual {
            Some((r, r_l)) if r_l.dims() == x_l.dims() => {
                Some(contiguous_view(r, r_l, "residual")?)
            }
            Some((_, r_l)) => {
                candle_core::bail!("residual {:?} does not match {:?}", r_l.dims(), x_l.dims())
            }
            None => None,
        };
        let name = if residual.is_some() {
            format!("{name}_residual")
        } else {
            name.to_string()
        };
        let func = dev.get_or_load_custom_func(&kernel_name::<T>(&name), MODULE, PTX)?;
        let mut out = x.slice_mut(start..end);
        // The kernels read element i and then write element i: input and output may be the same memory.
        let input = out.device_ptr(dev.cuda_stream().as_ref()).0;
        let (nr, ni, nc) = (rows as u32, inner as u32, b_l.shape().elem_count() as u32);
        let mut builder = func.builder();
        builder.arg(&input);
        builder.arg(&b);
        if let Some(r) = &residual {
            builder.arg(r);
        }
        builder.arg(&mut out);
        builder.arg(&nr);
        builder.arg(&ni);
        if matches!(self.0, BiasAdd::Channels) {
            builder.arg(&nc);
        }
        // SAFETY: rows * inner elements of x (and of the residual, same shape) are read and written once each;
        // bias indices stay below its length.
        unsafe { builder.launch(grid_for(rows, inner)) }.w()?;
        Ok(())
    }
}

impl candle_core::InplaceOp2 for InPlaceBias {
    fn name(&self) -> &'static str {
        "sd-fused-bias-add-in-place"
    }

    fn cpu_fwd(
        &self,
        _: &mut candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<()> {
        candle_core::bail!("the in-place bias add runs on CUDA tensors only")
    }

    fn cuda_fwd(
        &self,
        x: &mut CudaStorage,
        x_l: &Layout,
        b: &CudaStorage,
        b_l: &Layout,
    ) -> candle_core::Result<()> {
        use candle_core::cuda_backend::CudaStorageSlice as S;
        let dev = x.device().clone();
        match (&mut x.slice, &b.slice) {
            (S::F32(x), S::F32(b)) => self.run(x, x_l, b, b_l, None, &dev),
            (S::F16(x), S::F16(b)) => self.run(x, x_l, b, b_l, None, &dev),
            (S::BF16(x), S::BF16(b)) => self.run(x, x_l, b, b_l, None, &dev),
            _ => candle_core::bail!("in-place bias add: f32, f16 or bf16 of one type only"),
        }
    }
}

impl candle_core::InplaceOp3 for InPlaceBias {
    fn name(&self) -> &'static str {
        "sd-fused-bias-add-residual-in-place"
    }

    fn cpu_fwd(
        &self,
        _: &mut candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<()> {
        candle_core::bail!("the in-place bias add runs on CUDA tensors only")
    }

    fn cuda_fwd(
        &self,
        x: &mut CudaStorage,
        x_l: &Layout,
        b: &CudaStorage,
        b_l: &Layout,
        r: &CudaStorage,
        r_l: &Layout,
    ) -> candle_core::Result<()> {
        use candle_core::cuda_backend::CudaStorageSlice as S;
        let dev = x.device().clone();
        match (&mut x.slice, &b.slice, &r.slice) {
            (S::F32(x), S::F32(b), S::F32(r)) => self.run(x, x_l, b, b_l, Some((r, r_l)), &dev),
            (S::F16(x), S::F16(b), S::F16(r)) => self.run(x, x_l, b, b_l, Some((r, r_l)), &dev),
            (S::BF16(x), S::BF16(b), S::BF16(r)) => self.run(x, x_l, b, b_l, Some((r, r_l)), &dev),
            _ => candle_core::bail!("in-place bias add: f32, f16 or bf16 of one type only"),
        }
    }
}

/// [`add_bias_columns`] plus `residual` (the shape of `x`) in the same pass.
pub fn add_bias_columns_residual(
    x: &Tensor,
    bias: &Tensor,
    residual: &Tensor,
) -> candle_core::Result<Tensor> {
    let bias = bias.to_dtype(x.dtype())?.contiguous()?;
    let residual = residual.to_dtype(x.dtype())?.contiguous()?;
    x.contiguous()?
        .apply_op3_no_bwd(&bias, &residual, &BiasAddResidual(BiasAdd::Columns))
}

/// `x` `[..., n]` plus `bias[n]` on every row.
pub fn add_bias_columns(x: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
    let bias = bias.to_dtype(x.dtype())?.contiguous()?;
    x.contiguous()?.apply_op2_no_bwd(&bias, &BiasAdd::Columns)
}

enum BiasAdd {
    /// Bias per dimension 1 (NCHW channels).
    Channels,
    /// Bias per last-dimension index.
    Columns,
}

impl BiasAdd {
    /// (rows, elements per row, kernel name) of `x` for this bias layout.
    fn geometry(
        &self,
        x_l: &Layout,
        bias_len: usize,
    ) -> candle_core::Result<(usize, usize, &'static str)> {
        let dims = x_l.dims();
        let total = x_l.shape().elem_count();
        let geometry = match self {
            Self::Channels => {
                if dims.len() < 2 || dims[1] != bias_len {
                    candle_core::bail!("bias add: {dims:?} has no channel dimension of {bias_len}");
                }
                let inner: usize = dims[2..].iter().product();
                (dims[0] * dims[1], inner, "bias_channels")
            }
            Self::Columns => {
                if dims.last() != Some(&bias_len) {
                    candle_core::bail!("bias add: {dims:?} does not end in {bias_len}");
                }
                (total / bias_len.max(1), bias_len, "bias_columns")
            }
        };
        if geometry.0 > u32::MAX as usize || geometry.1 > u32::MAX as usize {
            candle_core::bail!("bias add: tensor {dims:?} is too large for the fused kernel");
        }
        Ok(geometry)
    }
}

/// A bias add with a residual of the input's shape added in the same pass.
struct BiasAddResidual(BiasAdd);

impl Map3 for BiasAddResidual {
    fn f<T: DeviceRepr + WithDType>(
        &self,
        x: &CudaSlice<T>,
        x_l: &Layout,
        b: &CudaSlice<T>,
        b_l: &Layout,
        r: &CudaSlice<T>,
        r_l: &Layout,
        dev: &CudaDevice,
    ) -> candle_core::Result<CudaSlice<T>> {
        if r_l.dims() != x_l.dims() {
            candle_core::bail!("residual {:?} does not match {:?}", r_l.dims(), x_l.dims());
        }
        let x = contiguous_view(x, x_l, "bias-add input")?;
        let b = contiguous_view(b, b_l, "bias")?;
        let r = contiguous_view(r, r_l, "residual")?;
        let total = x_l.shape().elem_count();
        let bias_len = b_l.shape().elem_count();
        let (rows, inner, name) = self.0.geometry(x_l, bias_len)?;
        // SAFETY: every element is written.
        let mut out = unsafe { dev.alloc::<T>(total)? };
        let name = kernel_name::<T>(&format!("{name}_residual"));
        let func = dev.get_or_load_custom_func(&name, MODULE, PTX)?;
        let mut builder = func.builder();
        let (nr, ni, nc) = (rows as u32, inner as u32, bias_len as u32);
        builder.arg(&x);
        builder.arg(&b);
        builder.arg(&r);
        builder.arg(&mut out);
        builder.arg(&nr);
        builder.arg(&ni);
        if matches!(self.0, BiasAdd::Channels) {
            builder.arg(&nc);
        }
        // SAFETY: rows * inner == total for x, residual and out; bias indices stay below bias_len.
        unsafe { builder.launch(grid_for(rows, inner)) }.w()?;
        Ok(out)
    }
}

cuda_only_op!(3, BiasAddResidual, "sd-fused-bias-add-residual", |l| l
    .shape()
    .clone());

impl Map2 for BiasAdd {
    fn f<T: DeviceRepr + WithDType>(
        &self,
        x: &CudaSlice<T>,
        x_l: &Layout,
        b: &CudaSlice<T>,
        b_l: &Layout,
        dev: &CudaDevice,
    ) -> candle_core::Result<CudaSlice<T>> {
        let x = contiguous_view(x, x_l, "bias-add input")?;
        let b = contiguous_view(b, b_l, "bias")?;
        let total = x_l.shape().elem_count();
        let bias_len = b_l.shape().elem_count();
        let (rows, inner, name) = self.geometry(x_l, bias_len)?;
        // SAFETY: every element is written.
        let mut out = unsafe { dev.alloc::<T>(total)? };
        let func = dev.get_or_load_custom_func(&kernel_name::<T>(name), MODULE, PTX)?;
        let mut builder = func.builder();
        let (r, i, c) = (rows as u32, inner as u32, bias_len as u32);
        builder.arg(&x);
        builder.arg(&b);
        builder.arg(&mut out);
        builder.arg(&r);
        builder.arg(&i);
        if matches!(self, Self::Channels) {
            builder.arg(&c);
        }
        // SAFETY: rows * inner == total; bias indices stay below bias_len (r % channels, or j < cols).
        unsafe { builder.launch(grid_for(rows, inner)) }.w()?;
        Ok(out)
    }
}

cuda_only_op!(2, BiasAdd, "sd-fused-bias-add", |l| l.shape().clone());
