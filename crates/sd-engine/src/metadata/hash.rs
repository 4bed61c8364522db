//! The model's identity as A1111 reports it: a name (`Model: ...`) and the short hash (`Model hash: ...`,
//! the first 10 hex digits of the checkpoint file's SHA-256).
//!
//! A single-file checkpoint is hashed as A1111 hashes it: the SHA-256 of the whole file (its short form is
//! what A1111 writes as `Model hash`), plus A1111's legacy hash (8 hex digits of the SHA-256 of the 64 KiB at
//! offset 1 MiB), which older infotexts carry. A diffusers folder has no single file, so we hash what
//! identifies its weights best: the UNet weights the loader picks (`unet/diffusion_pytorch_model[.variant].safetensors`;
//! a sharded UNet's shards concatenated in file-name order). It is computed once at load, on a thread of its own.

use std::io::Read;
use std::path::{Path, PathBuf};

use sd_core::loader::hub::HubOptions;
use sd_core::loader::{find_weight_files, ModelFolder};
use sha2::{Digest, Sha256};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelHash {
    /// 64 lowercase hex digits.
    pub sha256: String,
    /// A1111's legacy hash (`model_hash()` before 1.0) of a single-file checkpoint: 8 hex digits.
    pub legacy: Option<String>,
}

impl ModelHash {
    /// A1111's short hash: the first 10 hex digits.
    pub fn short(&self) -> &str {
        self.sha256.get(..10).unwrap_or(&self.sha256)
    }
}

/// SHA-256 of `files` read one after another.
pub fn hash_files(files: &[PathBuf]) -> std::io::Result<ModelHash> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    for path in files {
        let mut file = std::fs::File::open(path)?;
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
    }
    let digest = hasher.finalize();
    let sha256 = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(ModelHash {
        sha256,
        legacy: None,
    })
}

/// A1111's legacy `model_hash`: SHA-256 of the 0x10000 bytes at offset 0x100000, first 8 hex digits
/// (of whatever the file has there: small files hash fewer or no bytes, as A1111 does).
pub fn legacy_hash(path: &Path) -> std::io::Result<String> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let mut chunk = Vec::with_capacity(0x10000);
    if file.metadata()?.len() > 0x100000 {
        file.seek(SeekFrom::Start(0x100000))?;
        file.take(0x10000).read_to_end(&mut chunk)?;
    }
    let digest = Sha256::digest(&chunk);
    Ok(digest
        .iter()
        .take(4)
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

/// The UNet weight files of a model reference (folder or hub id), as the loader would pick them; a single
/// checkpoint file is its own.
pub fn unet_weight_files(
    reference: &str,
    variant: Option<&str>,
    hub: &HubOptions,
) -> Result<Vec<PathBuf>, String> {
    if Path::new(reference).is_file() {
        return Ok(vec![PathBuf::from(reference)]);
    }
    let folder =
        ModelFolder::resolve(reference, variant, hub).map_err(|error| error.to_string())?;
    find_weight_files(
        &folder.component("unet"),
        "diffusion_pytorch_model",
        variant,
    )
    .map_err(|error| error.to_string())
}

/// Hashes a model's UNet weights; `None` (with a warning) when they cannot be read, since a missing hash only
/// costs a metadata field.
pub fn hash_model(reference: &str, variant: Option<&str>, hub: &HubOptions) -> Option<ModelHash> {
    let started = std::time::Instant::now();
    let result = unet_weight_files(reference, variant, hub).and_then(|files| {
        let mut hash = hash_files(&files).map_err(|error| error.to_string())?;
        if Path::new(reference).is_file() {
            hash.legacy =
                Some(legacy_hash(Path::new(reference)).map_err(|error| error.to_string())?);
        }
        Ok(hash)
    });
    match result {
        Ok(hash) => {
            tracing::info!(
                hash = hash.short(),
                seconds = started.elapsed().as_secs_f64(),
                "model hashed"
            );
            Some(hash)
        }
        Err(error) => {
            tracing::warn!(%error, "cannot hash the model; images will carry no model hash");
            None
        }
    }
}

/// The name A1111 shows for a model: the file (or folder, or hub repository) name without directories, and
/// without the extension of a checkpoint file.
pub fn model_name(reference: &str) -> String {
    let trimmed = reference.trim_end_matches(['/', '\\']);
    let path = Path::new(trimmed);
    let checkpoint = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    let name = if checkpoint {
        path.file_stem()
    } else {
        path.file_name()
    };
    name.and_then(|name| name.to_str())
        .unwrap_or(trimmed)
        .to_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const A1111_SHORT: &str = "3e12317cd6";
    const A1111_LEGACY: &str = "6a2bdca2";

    #[test]
    fn hashes_files_in_sequence_like_one_file() {
        let dir = std::env::temp_dir().join(format!("sd-engine-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::write(&a, b"ab").unwrap();
        std::fs::write(&b, b"c").unwrap();
        let hash = hash_files(&[a, b]).unwrap();
        // sha256("abc")
        assert_eq!(
            hash.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hash.short(), "ba7816bf8f");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_are_the_last_path_component() {
        assert_eq!(model_name("tests/fixtures/models/tiny-sd1"), "tiny-sd1");
        assert_eq!(model_name("tests/fixtures/models/tiny-sd1/"), "tiny-sd1");
        assert_eq!(model_name("stabilityai/sd-turbo"), "sd-turbo");
        assert_eq!(model_name("fake"), "fake");
        assert_eq!(
            model_name("/m/v1-5-pruned-emaonly.safetensors"),
            "v1-5-pruned-emaonly"
        );
    }

    #[test]
    fn single_files_hash_whole_with_a1111_legacy_hash() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/single_file/tiny-sd1.safetensors");
        let reference = file.to_str().unwrap();
        let hash = hash_model(reference, None, &HubOptions::default()).unwrap();
        assert_eq!(
            hash.sha256,
            hash_files(std::slice::from_ref(&file)).unwrap().sha256
        );
        // Computed with A1111's `hashes.calculate_sha256` and `sd_models.model_hash` (Python).
        assert_eq!(hash.short(), A1111_SHORT);
        assert_eq!(hash.legacy.as_deref(), Some(A1111_LEGACY));
    }

    #[test]
    fn hashes_the_fixture_unet() {
        let root =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/tiny-sd1");
        let files =
            unet_weight_files(root.to_str().unwrap(), None, &HubOptions::default()).unwrap();
        assert_eq!(files.len(), 1);
        assert!(files[0].ends_with("unet/diffusion_pytorch_model.safetensors"));
        let hash = hash_model(root.to_str().unwrap(), None, &HubOptions::default()).unwrap();
        assert_eq!(hash, hash_files(&files).unwrap());
        assert_eq!(hash.short().len(), 10);
    }
}
