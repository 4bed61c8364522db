//! A1111's `Lora hashes` infotext field: `"name: hash, name: hash"`, where the hash is the first 12 hex
//! digits of A1111's "addnet" hash of a `.safetensors` file (SHA-256 of everything after the JSON header,
//! so renaming or re-tagging a file keeps its hash). Hashes are cached per file and modification time.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use sd_core::adapters::AppliedLoras;
use sha2::{Digest, Sha256};

type Cache = Mutex<HashMap<PathBuf, (Option<SystemTime>, String)>>;

/// The addnet SHA-256 of a safetensors file (hex), or `None` when it cannot be read.
pub fn addnet_hash(path: &Path) -> Option<String> {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Cache::default);
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    if let Some((m, hash)) = cache.lock().ok()?.get(path) {
        if *m == modified {
            return Some(hash.clone());
        }
    }
    let mut file = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).ok()?;
    let header = u64::from_le_bytes(len);
    std::io::copy(&mut (&mut file).take(header), &mut std::io::sink()).ok()?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).ok()?;
    let hash: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if let Ok(mut c) = cache.lock() {
        c.insert(path.to_path_buf(), (modified, hash.clone()));
    }
    Some(hash)
}

/// The `Lora hashes` value for a run's LoRAs (`None` without LoRAs).
pub fn lora_hashes(applied: &AppliedLoras) -> Option<String> {
    if applied.loras.is_empty() {
        return None;
    }
    let parts: Vec<String> = applied
        .loras
        .iter()
        .map(|l| {
            let hash = addnet_hash(&l.path).unwrap_or_default();
            format!("{}: {}", l.name, hash.get(..12).unwrap_or(&hash))
        })
        .collect();
    Some(parts.join(", "))
}

/// Adds `Lora hashes` to a PNG's parameters when the run used LoRAs.
pub fn add_lora_hashes(params: &mut super::infotext::GenerationParams, applied: &AppliedLoras) {
    if let Some(value) = lora_hashes(applied) {
        params.extra.push(("Lora hashes".into(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addnet_hash_skips_the_header() {
        let dir = std::env::temp_dir().join(format!("sd-lora-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.safetensors");
        let mut bytes = 4u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}  abc");
        std::fs::write(&path, &bytes).unwrap();
        let expected: String = Sha256::digest(b"abc")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(addnet_hash(&path).unwrap(), expected);
        let applied = AppliedLoras {
            loras: vec![sd_core::adapters::AppliedLora {
                name: "x".into(),
                te_weight: 0.8,
                unet_weight: 0.8,
                path: path.clone(),
            }],
            warnings: vec![],
        };
        assert_eq!(
            lora_hashes(&applied).unwrap(),
            format!("x: {}", &expected[..12])
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
