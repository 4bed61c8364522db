#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is a failed test.

use super::*;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sd-library-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn folder_model(at: &Path) {
    std::fs::create_dir_all(at.join("unet")).unwrap();
    std::fs::write(at.join("model_index.json"), "{}").unwrap();
    std::fs::create_dir_all(at.join("text_encoder")).unwrap();
    std::fs::write(at.join("unet").join("config.json"), "{}").unwrap();
    std::fs::write(
        at.join("text_encoder").join("config.json"),
        r#"{"hidden_act": "gelu"}"#,
    )
    .unwrap();
}

#[test]
fn scan_names_folders_and_files_one_level_deep_and_skips_pickles() {
    let root = temp("scan");
    folder_model(&root.join("beta"));
    std::fs::write(root.join("alpha.safetensors"), b"garbage").unwrap();
    std::fs::write(root.join("old.ckpt"), b"pickle").unwrap();
    std::fs::write(root.join("notes.txt"), b"text").unwrap();
    std::fs::create_dir_all(root.join("sub").join("deeper")).unwrap();
    std::fs::write(root.join("sub").join("gamma.SafeTensors"), b"x").unwrap();
    // Two levels down is not scanned.
    std::fs::write(
        root.join("sub").join("deeper").join("delta.safetensors"),
        b"x",
    )
    .unwrap();
    std::fs::create_dir_all(root.join(".hidden")).unwrap();
    folder_model(&root.join(".hidden").join("secret"));

    let scan = scan(std::slice::from_ref(&root));
    let names: Vec<&str> = scan.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["alpha", "beta", "gamma"]);
    assert_eq!(scan.models[0].format, ModelFormat::SingleFile);
    assert_eq!(scan.models[0].family, None, "garbage has no family");
    assert_eq!(scan.models[1].format, ModelFormat::Diffusers);
    assert_eq!(scan.models[1].family.as_deref(), Some("sd2"));
    assert!(
        scan.warnings.iter().any(|w| w.contains("old.ckpt")),
        "{:?}",
        scan.warnings
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn the_first_dir_wins_a_duplicate_name_with_a_warning() {
    let (first, second) = (temp("dup-a"), temp("dup-b"));
    std::fs::write(first.join("same.safetensors"), b"a").unwrap();
    folder_model(&second.join("same"));
    std::fs::write(second.join("other.safetensors"), b"b").unwrap();
    let scan = scan(&[first.clone(), second.clone(), first.join("missing")]);
    assert_eq!(scan.models.len(), 2);
    assert_eq!(scan.models[1].name, "same");
    assert_eq!(scan.models[1].format, ModelFormat::SingleFile);
    assert!(scan.warnings.iter().any(|w| w.contains("shadowed")));
    assert!(scan.warnings.iter().any(|w| w.contains("cannot read")));
    let _ = std::fs::remove_dir_all(&first);
    let _ = std::fs::remove_dir_all(&second);
}

#[test]
fn names_resolve_in_every_form_a1111_uses() {
    let root = temp("resolve");
    std::fs::write(root.join("model-a.safetensors"), b"weights a").unwrap();
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("sub").join("model-b.safetensors"), b"weights b").unwrap();
    let factory: LoaderFactory =
        Arc::new(|_model: &LibraryModel, _hash| Box::new(|| Err("no loads in this test".into())));
    let library = ModelLibrary::new(vec![root.clone()], factory);
    let hash = metadata::hash::hash_files(&[root.join("model-a.safetensors")]).unwrap();
    library.set_hash("model-a", hash.clone());
    for reference in [
        "model-a",
        "model-a.safetensors",
        &format!("model-a [{}]", hash.short()),
        &format!("model-a.safetensors [{}]", hash.short()),
        hash.short(),
        &hash.sha256,
        &root.join("model-a.safetensors").display().to_string(),
    ] {
        assert_eq!(
            library.resolve(reference).as_deref(),
            Some("model-a"),
            "{reference}"
        );
    }
    assert_eq!(
        library.resolve("sub/model-b.safetensors").as_deref(),
        Some("model-b")
    );
    assert_eq!(library.resolve("model-c"), None);
    assert!(library.loader("model-a").is_some());
    assert!(library.loader("model-c").is_none());

    // A rescan sees a copied-in model; a changed file loses its cached hash.
    std::fs::write(root.join("model-c.safetensors"), b"c").unwrap();
    assert_eq!(library.resolve("model-c"), None);
    library.rescan();
    assert_eq!(library.resolve("model-c").as_deref(), Some("model-c"));
    std::fs::write(root.join("model-a.safetensors"), b"changed weights").unwrap();
    assert_ne!(library.hash("model-a"), Some(hash));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn references_outside_the_folders_come_first_and_survive_rescans() {
    let root = temp("extra");
    std::fs::write(root.join("inside.safetensors"), b"x").unwrap();
    let factory: LoaderFactory =
        Arc::new(|_model: &LibraryModel, _hash| Box::new(|| Err("no loads".into())));
    let library = ModelLibrary::new(vec![root.clone()], factory);
    assert_eq!(library.add_reference("org/hub-model"), "hub-model");
    library.rescan();
    assert_eq!(library.names(), ["hub-model", "inside"]);
    assert_eq!(
        library.get("hub-model").unwrap().format,
        ModelFormat::Reference
    );
    let _ = std::fs::remove_dir_all(&root);
}
