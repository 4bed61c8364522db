//! With the `cuda` feature, compiles every `src/cuda/*.cu` (one per fused op, beside the launcher that loads it)
//! to `OUT_DIR/<name>.ptx` with the nvcc on PATH (the same one candle's kernels are built with; see
//! tools/build-cuda.sh). Without it there is nothing to build.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/cuda");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".into());
    let mut kernels: Vec<PathBuf> = std::fs::read_dir("src/cuda")
        .expect("src/cuda holds the kernels")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "cu"))
        .collect();
    kernels.sort();
    for source in kernels {
        println!("cargo::rerun-if-changed={}", source.display());
        let name = source.file_stem().expect("a .cu file has a stem");
        let mut nvcc = Command::new("nvcc");
        nvcc.args(["--ptx", "-O3", "-std=c++17"])
            .arg(format!("-arch=sm_{cap}"))
            .arg(&source)
            .arg("-o")
            .arg(out.join(name).with_extension("ptx"));
        if let Ok(root) = std::env::var("CUDA_ROOT") {
            nvcc.arg(format!("-I{root}/include"));
        }
        let status = nvcc
            .status()
            .expect("the cuda feature needs nvcc on PATH (tools/build-cuda.sh sets it up)");
        assert!(status.success(), "nvcc failed on {}", source.display());
    }
}
