//! Tiled VAE passes (diffusers' `enable_vae_tiling`): run on overlapping windows, crossfade the seams.

use candle_core::Tensor;

use crate::Result;

/// diffusers' tiling scheme, shared by encoding and decoding: `f` runs on `tile` x `tile` windows of `input`
/// every `stride` rows and columns; each result is crossfaded over `blend` rows/columns into the one above and
/// the one to its left (as already blended, since diffusers blends in place), cropped to `keep` x `keep`, and
/// the crops are joined.
pub(super) fn tiled(
    input: &Tensor,
    tile: usize,
    stride: usize,
    blend: usize,
    keep: usize,
    f: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let (_, _, h, w) = input.dims4()?;
    let mut grid: Vec<Vec<Tensor>> = Vec::new();
    for i in (0..h).step_by(stride) {
        let mut row = Vec::new();
        for j in (0..w).step_by(stride) {
            let window = input
                .narrow(2, i, tile.min(h - i))?
                .narrow(3, j, tile.min(w - j))?;
            row.push(f(&window)?);
        }
        grid.push(row);
    }
    let mut rows = Vec::with_capacity(grid.len());
    for i in 0..grid.len() {
        let mut cropped = Vec::with_capacity(grid[i].len());
        for j in 0..grid[i].len() {
            let mut out = grid[i][j].clone();
            if i > 0 {
                out = blend_edge(&grid[i - 1][j], &out, blend, 2)?;
            }
            if j > 0 {
                out = blend_edge(&grid[i][j - 1], &out, blend, 3)?;
            }
            grid[i][j] = out.clone();
            let (_, _, th, tw) = out.dims4()?;
            cropped.push(out.narrow(2, 0, keep.min(th))?.narrow(3, 0, keep.min(tw))?);
        }
        rows.push(Tensor::cat(&cropped, 3)?);
    }
    Ok(Tensor::cat(&rows, 2)?)
}

/// Crossfades the first `extent` rows (dim 2) or columns (dim 3) of `next` from the last ones of `prev`:
/// weight y / extent for `next` at offset y, as diffusers' `blend_v` / `blend_h`.
fn blend_edge(prev: &Tensor, next: &Tensor, extent: usize, dim: usize) -> Result<Tensor> {
    let extent = extent.min(prev.dim(dim)?).min(next.dim(dim)?);
    if extent == 0 {
        return Ok(next.clone());
    }
    let ramp: Vec<f32> = (0..extent).map(|y| y as f32 / extent as f32).collect();
    let mut shape = [1usize, 1, 1, 1];
    shape[dim] = extent;
    let w_next = Tensor::from_vec(ramp, &shape[..], next.device())?.to_dtype(next.dtype())?;
    let w_prev = (1.0 - &w_next)?;
    let tail = prev.narrow(dim, prev.dim(dim)? - extent, extent)?;
    let head = next.narrow(dim, 0, extent)?;
    let blended = (tail.broadcast_mul(&w_prev)? + head.broadcast_mul(&w_next)?)?;
    let rest = next.dim(dim)? - extent;
    if rest == 0 {
        return Ok(blended);
    }
    Ok(Tensor::cat(
        &[&blended, &next.narrow(dim, extent, rest)?],
        dim,
    )?)
}
