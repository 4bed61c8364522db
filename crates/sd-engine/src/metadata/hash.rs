//! The model's identity as A1111 reports it: a name (`Model: ...`) and the short hash (`Model hash: ...`,
//! the first 10 hex digits of the checkpoint file's SHA-256).
//!
//! We load diffusers folders, not single checkpoint files, so we hash what identifies the weights best: the
//! UNet weights the loader picks (`unet/diffusion_pytorch_model[.variant].safetensors`; a sharded UNet's shards
//! concatenated in file-name order). It is computed once at load, on a thread of its own.

use std::io::Read;
use std::path::{Path, PathBuf};

use sd_core::loader::hub::HubOptions;
use sd_core::loader::{find_weight_files, ModelFolder};
use sha2::{Digest, Sha256};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelHash {
    /// 64 lowercase hex digits.
    pub sha256: String,
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
    Ok(ModelHash { sha256 })
}

/// The UNet weight files of a model reference (folder or hub id), as the loader would pick them.
pub fn unet_weight_files(
    reference: &str,
    variant: Option<&str>,
    hub: &HubOptions,
) -> Result<Vec<PathBuf>, String> {
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
    let result = unet_weight_files(reference, variant, hub)
        .and_then(|files| hash_files(&files).map_err(|error| error.to_string()));
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

/// The name A1111 shows for a model: the file (here: folder or hub repository) name without directories.
pub fn model_name(reference: &str) -> String {
    let trimmed = reference.trim_end_matches(['/', '\\']);
    Path::new(trimmed)
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or(trimmed)
        .to_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
