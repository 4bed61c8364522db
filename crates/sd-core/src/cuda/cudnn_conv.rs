//! 2-D convolution through cuDNN set up the way PyTorch sets it up: half inputs with f32 accumulation
//! (PSEUDO_HALF), tensor-core math allowed (TF32 for f32 inputs, as `torch.backends.cudnn.allow_tf32`), the
//! heuristically best algorithm per shape cached, and the workspace taken from the stream-ordered pool without
//! zeroing. candle's own cuDNN path accumulates half inputs in half, leaves the math type at its default and
//! picks an algorithm on every call; it measured 7x slower than candle's im2col path on the SD 1.5 UNet.
#![allow(unsafe_code)] // cuDNN calls are FFI; each states why its buffers match its descriptors.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::cudnn::{self, ConvForward, Cudnn, CudnnDataType};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, DeviceRepr};
use candle_core::cuda_backend::DeviceId;
use candle_core::{CudaDevice, CudaStorage, CustomOp2, DType, Layout, Shape, Tensor};

use cudnn::sys::{
    cudnnConvolutionFwdAlgo_t as Algo, cudnnConvolutionMode_t, cudnnMathType_t, cudnnTensorFormat_t,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvParams {
    pub padding: usize,
    pub stride: usize,
    pub dilation: usize,
    /// The most scratch bytes the plan may take (`KernelOptions::conv_workspace_limit`); part of the plan's
    /// key, so layers built with different limits never share a plan.
    pub workspace_limit: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct PlanKey {
    device: DeviceId,
    dtype: DType,
    x: [usize; 4],
    w: [usize; 4],
    params: ConvParams,
}

/// Everything cuDNN needs for one shape, built once: descriptor setup and the algorithm query cost more host
/// time than the convolution itself takes on the GPU.
struct Plan<T: CudnnDataType> {
    x: cudnn::TensorDescriptor<T>,
    w: cudnn::FilterDescriptor<T>,
    y: cudnn::TensorDescriptor<T>,
    conv: cudnn::ConvDescriptor<f32>,
    algo: Algo,
    workspace_bytes: usize,
    out_dims: [usize; 4],
}

thread_local! {
    // cuDNN handles are neither Send nor Sync: one per (thread, device), like candle's.
    static HANDLES: RefCell<HashMap<DeviceId, Arc<Cudnn>>> = RefCell::new(HashMap::new());
    static PLANS: RefCell<HashMap<PlanKey, Rc<dyn Any>>> = RefCell::new(HashMap::new());
}

/// `x` `[n, c, h, w]` convolved with `w` `[k, c, r, s]` (groups 1), no bias.
pub fn conv2d(x: &Tensor, w: &Tensor, params: ConvParams) -> candle_core::Result<Tensor> {
    let x = x.contiguous()?;
    let w = w.to_dtype(x.dtype())?.contiguous()?;
    x.apply_op2_no_bwd(&w, &CudnnConv(params))
}

struct CudnnConv(ConvParams);

fn handle(dev: &CudaDevice) -> candle_core::Result<Arc<Cudnn>> {
    HANDLES.with(|handles| {
        if let Some(h) = handles.borrow().get(&dev.id()) {
            return Ok(h.clone());
        }
        let h = Cudnn::new(dev.cuda_stream()).map_err(candle_core::Error::wrap)?;
        handles.borrow_mut().insert(dev.id(), h.clone());
        Ok(h)
    })
}

fn dims4(layout: &Layout, what: &str) -> candle_core::Result<[usize; 4]> {
    match layout.dims() {
        &[a, b, c, d] => Ok([a, b, c, d]),
        other => candle_core::bail!("cudnn conv2d: {what} must be 4-D, got {other:?}"),
    }
}

impl CudnnConv {
    fn run<T>(
        &self,
        x: &CudaSlice<T>,
        x_l: &Layout,
        w: &CudaSlice<T>,
        w_l: &Layout,
        dev: &CudaDevice,
    ) -> candle_core::Result<(CudaSlice<T>, Shape)>
    where
        T: DeviceRepr + CudnnDataType + candle_core::WithDType + 'static,
    {
        let p = self.0;
        let (xd, wd) = (dims4(x_l, "input")?, dims4(w_l, "weight")?);
        if xd[1] != wd[1] {
            candle_core::bail!(
                "cudnn conv2d: input has {} channels, weight {}",
                xd[1],
                wd[1]
            );
        }
        let out_side = |i: usize, k: usize| {
            (i + 2 * p.padding)
                .checked_sub(p.dilation * (k - 1) + 1)
                .map(|v| v / p.stride + 1)
        };
        let (Some(oh), Some(ow)) = (out_side(xd[2], wd[2]), out_side(xd[3], wd[3])) else {
            candle_core::bail!("cudnn conv2d: kernel {wd:?} larger than padded input {xd:?}");
        };
        let yd = [xd[0], wd[0], oh, ow];
        let (Some((xs, xe)), Some((ws, we))) = (x_l.contiguous_offsets(), w_l.contiguous_offsets())
        else {
            candle_core::bail!("cudnn conv2d: input and weight must be contiguous");
        };
        let x = x.slice(xs..xe);
        let w = w.slice(ws..we);
        let key = PlanKey {
            device: dev.id(),
            dtype: T::DTYPE,
            x: xd,
            w: wd,
            params: p,
        };
        let cached = PLANS.with(|plans| plans.borrow().get(&key).cloned());
        let plan = match cached {
            Some(plan) => plan,
            None => {
                let plan: Rc<dyn Any> = Rc::new(Self::plan::<T>(dev, xd, wd, yd, p)?);
                PLANS.with(|plans| plans.borrow_mut().insert(key, plan.clone()));
                plan
            }
        };
        let Some(plan) = plan.downcast_ref::<Plan<T>>() else {
            candle_core::bail!("cudnn conv2d: cached plan has another dtype");
        };
        let op = ConvForward {
            conv: &plan.conv,
            x: &plan.x,
            w: &plan.w,
            y: &plan.y,
        };
        let (algo, workspace_bytes) = (plan.algo, plan.workspace_bytes);
        let wrap = candle_core::Error::wrap;

        // SAFETY: cuDNN writes every output element; the workspace is scratch space it may leave dirty.
        let mut y = unsafe { dev.alloc::<T>(plan.out_dims.iter().product())? };
        let mut workspace = unsafe { dev.alloc::<u8>(workspace_bytes.max(1))? };
        // SAFETY: x, w and y are contiguous NCHW buffers of exactly the sizes their descriptors declare, on
        // the stream the handle was created with; alpha 1, beta 0 (y is not read).
        unsafe {
            op.launch::<CudaSlice<u8>, _, _, _>(
                algo,
                Some(&mut workspace),
                (T::from_f64(1.0), T::from_f64(0.0)),
                &x,
                &w,
                &mut y,
            )
        }
        .map_err(wrap)?;
        Ok((y, Shape::from(plan.out_dims.to_vec())))
    }

    fn plan<T: CudnnDataType + candle_core::WithDType>(
        dev: &CudaDevice,
        xd: [usize; 4],
        wd: [usize; 4],
        yd: [usize; 4],
        p: ConvParams,
    ) -> candle_core::Result<Plan<T>> {
        let i32s = |d: [usize; 4]| d.map(|v| v as i32);
        let cudnn = handle(dev)?;
        let wrap = candle_core::Error::wrap;
        let nchw = cudnnTensorFormat_t::CUDNN_TENSOR_NCHW;
        let x = cudnn.create_4d_tensor::<T>(nchw, i32s(xd)).map_err(wrap)?;
        let w = cudnn.create_4d_filter::<T>(nchw, i32s(wd)).map_err(wrap)?;
        let y = cudnn.create_4d_tensor::<T>(nchw, i32s(yd)).map_err(wrap)?;
        let (pad, stride, dil) = (p.padding as i32, p.stride as i32, p.dilation as i32);
        // f32 accumulation for every input type (PSEUDO_HALF / PSEUDO_BFLOAT16 for half inputs).
        let mut conv = cudnn
            .create_conv2d::<f32>(
                [pad, pad],
                [stride, stride],
                [dil, dil],
                cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
            )
            .map_err(wrap)?;
        // As PyTorch: tensor cores for half inputs; default math (TF32 allowed) for f32.
        let math = if T::DTYPE == DType::F32 {
            cudnnMathType_t::CUDNN_DEFAULT_MATH
        } else {
            cudnnMathType_t::CUDNN_TENSOR_OP_MATH
        };
        conv.set_math_type(math).map_err(wrap)?;
        let op = ConvForward {
            conv: &conv,
            x: &x,
            w: &w,
            y: &y,
        };
        let mut algo = op.pick_algorithm().map_err(wrap)?;
        let mut workspace_bytes = op.get_workspace_size(algo).map_err(wrap)?;
        let limit = p.workspace_limit;
        if workspace_bytes > limit {
            // The implicit-GEMM algorithms need (almost) no scratch space and run every configuration.
            use cudnn::sys::cudnnConvolutionFwdAlgo_t as Algo;
            for lean in [
                Algo::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
                Algo::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
            ] {
                if let Ok(bytes) = op.get_workspace_size(lean) {
                    if bytes <= limit {
                        (algo, workspace_bytes) = (lean, bytes);
                        break;
                    }
                }
            }
        }
        tracing::debug!(
            ?xd,
            ?wd,
            ?algo,
            workspace_mib = workspace_bytes >> 20,
            "cuDNN convolution plan"
        );
        Ok(Plan {
            x,
            w,
            y,
            conv,
            algo,
            workspace_bytes,
            out_dims: yd,
        })
    }
}

impl CustomOp2 for CudnnConv {
    fn name(&self) -> &'static str {
        "sd-cudnn-conv2d"
    }

    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, Shape)> {
        candle_core::bail!(
            "the cuDNN convolution runs on CUDA tensors only (the CPU path uses candle)"
        )
    }

    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        x_l: &Layout,
        w: &CudaStorage,
        w_l: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let dev = x.device().clone();
        let wrap = |slice: candle_core::cuda_backend::CudaStorageSlice| CudaStorage {
            slice,
            device: dev.clone(),
        };
        use candle_core::cuda_backend::CudaStorageSlice as S;
        let (slice, shape) = match (&x.slice, &w.slice) {
            (S::F16(x), S::F16(w)) => {
                let (y, s) = self.run(x, x_l, w, w_l, &dev)?;
                (S::F16(y), s)
            }
            (S::BF16(x), S::BF16(w)) => {
                let (y, s) = self.run(x, x_l, w, w_l, &dev)?;
                (S::BF16(y), s)
            }
            (S::F32(x), S::F32(w)) => {
                let (y, s) = self.run(x, x_l, w, w_l, &dev)?;
                (S::F32(y), s)
            }
            _ => candle_core::bail!("cudnn conv2d: input and weight must both be f32, f16 or bf16"),
        };
        Ok((wrap(slice), shape))
    }
}
