//! With the `cuda` feature, compiles kernels/fused.cu and kernels/flash.cu to PTX with the nvcc on PATH (the same one candle's kernels
//! are built with; see tools/build-cuda.sh). Without it there is nothing to build.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=kernels/fused.cu");
    println!("cargo::rerun-if-changed=kernels/flash.cu");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".into());
    for name in ["fused", "flash"] {
        let mut nvcc = Command::new("nvcc");
        nvcc.args(["--ptx", "-O3", "-std=c++17"])
            .arg(format!("-arch=sm_{cap}"))
            .arg(format!("kernels/{name}.cu"))
            .arg("-o")
            .arg(out.join(format!("{name}.ptx")));
        if let Ok(root) = std::env::var("CUDA_ROOT") {
            nvcc.arg(format!("-I{root}/include"));
        }
        let status = nvcc
            .status()
            .expect("the cuda feature needs nvcc on PATH (tools/build-cuda.sh sets it up)");
        assert!(status.success(), "nvcc failed on kernels/{name}.cu");
    }
}
