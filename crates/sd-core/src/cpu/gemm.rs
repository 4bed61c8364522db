//! A bounds-checked front for the `gemm` crate (the GEMM candle runs on): row-major matrices as slices with
//! row strides, `dst = (read_dst ? dst : 0) + lhs * rhs`, single-threaded (callers split work over rayon).
#![allow(unsafe_code)] // gemm::gemm takes raw pointers; `matmul` checks every extent against its slice first.

/// A row-major matrix view: `rows x cols`, element (r, c) at `r * row_stride + c * col_stride`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl Mat {
    pub fn row_major(rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major `cols x rows` matrix stored with `row_stride`.
    pub fn transposed(rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            rows,
            cols,
            row_stride: 1,
            col_stride: row_stride,
        }
    }

    /// One past the largest index the view touches (0 for an empty view).
    fn extent(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            return 0;
        }
        (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride + 1
    }
}

/// `dst[m x n] (+)= lhs[m x k] * rhs[k x n]` on the calling thread. Panics (a bug, not input) if a view leaves its slice or the
/// shapes disagree; callers build the views from checked tensor shapes.
pub(crate) fn matmul(
    dst: &mut [f32],
    d: Mat,
    read_dst: bool,
    lhs: &[f32],
    l: Mat,
    rhs: &[f32],
    r: Mat,
) {
    run(dst, d, read_dst, lhs, l, rhs, r, gemm::Parallelism::None)
}

/// [`matmul`] split by the `gemm` crate over rayon's threads (for one large product).
pub(crate) fn matmul_parallel(
    dst: &mut [f32],
    d: Mat,
    read_dst: bool,
    lhs: &[f32],
    l: Mat,
    rhs: &[f32],
    r: Mat,
) {
    let threads = rayon::current_num_threads().max(1);
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    run(dst, d, read_dst, lhs, l, rhs, r, par)
}

#[allow(clippy::too_many_arguments)]
fn run(
    dst: &mut [f32],
    d: Mat,
    read_dst: bool,
    lhs: &[f32],
    l: Mat,
    rhs: &[f32],
    r: Mat,
    par: gemm::Parallelism,
) {
    assert!(
        d.rows == l.rows && d.cols == r.cols && l.cols == r.rows,
        "gemm shapes"
    );
    assert!(d.extent() <= dst.len() && l.extent() <= lhs.len() && r.extent() <= rhs.len());
    if d.rows == 0 || d.cols == 0 {
        return;
    }
    if l.cols == 0 {
        if !read_dst {
            for i in 0..d.rows {
                for j in 0..d.cols {
                    dst[i * d.row_stride + j * d.col_stride] = 0.0;
                }
            }
        }
        return;
    }
    // SAFETY: the asserts above keep every element the three views address inside its slice; `dst` is a
    // unique borrow, so it overlaps neither input.
    unsafe {
        gemm::gemm(
            d.rows,
            d.cols,
            l.cols,
            dst.as_mut_ptr(),
            d.col_stride as isize,
            d.row_stride as isize,
            read_dst,
            lhs.as_ptr(),
            l.col_stride as isize,
            l.row_stride as isize,
            rhs.as_ptr(),
            r.col_stride as isize,
            r.row_stride as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        )
    }
}
