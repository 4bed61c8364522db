//! What the model thread has loaded: [`ModelSet`] (how the engine is told which models it may serve) and
//! [`LoadedModels`], the least-recently-used set of loaded backends bounded by `--max-loaded-models` and an
//! optional memory budget.
//!
//! Scheduling rule: jobs start in FIFO order (oldest first), whatever model they name. A job for a model
//! that is not loaded loads it when it reaches the front (evicting the least recently used model first), so
//! consecutive jobs for one model run back to back without reloads, and a job for a loaded model waits only
//! for the jobs queued before it, as FIFO requires. No job overtakes another, so none can starve.

use std::path::Path;
use std::sync::Arc;

use crate::backend::{Backend, Loader};
use crate::library::ModelLibrary;

/// The models an engine serves.
pub struct ModelSet {
    /// Where named models come from; `None`: a single-model engine that ignores names.
    pub library: Option<Arc<ModelLibrary>>,
    /// The model loaded at start, as (name, loader) candidates tried in order until one loads (the first
    /// to load becomes the default model). An empty name is replaced by the loaded model's own name.
    pub initial: Vec<(String, Loader)>,
    /// Backends kept loaded at most (at least 1).
    pub max_loaded: usize,
    /// Evict models while the loaded ones' estimated weights (bytes on disk) would exceed this.
    pub memory_budget: Option<u64>,
}

impl ModelSet {
    /// One model, no library: what [`crate::Engine::start`] serves.
    pub fn single(loader: Loader) -> Self {
        Self {
            library: None,
            initial: vec![(String::new(), loader)],
            max_loaded: 1,
            memory_budget: None,
        }
    }
}

pub(crate) struct Loaded {
    pub name: String,
    pub backend: Box<dyn Backend>,
    /// Estimated size of its weights.
    pub bytes: u64,
}

/// Loaded backends, least recently used first.
pub(crate) struct LoadedModels {
    entries: Vec<Loaded>,
    max: usize,
    budget: Option<u64>,
}

impl LoadedModels {
    pub fn new(max: usize, budget: Option<u64>) -> Self {
        Self {
            entries: Vec::new(),
            max: max.max(1),
            budget,
        }
    }

    /// The backend of `name`, marked as just used.
    pub fn touch(&mut self, name: &str) -> Option<&dyn Backend> {
        let index = self.entries.iter().position(|entry| entry.name == name)?;
        let entry = self.entries.remove(index);
        self.entries.push(entry);
        self.entries.last().map(|entry| &*entry.backend)
    }

    /// Evicts least recently used models until one of `incoming` bytes fits the count and the budget;
    /// returns the evicted names (their backends are dropped, freeing their memory, before the load).
    pub fn make_room(&mut self, incoming: u64) -> Vec<String> {
        let mut evicted = Vec::new();
        while !self.entries.is_empty() {
            let used: u64 = self.entries.iter().map(|entry| entry.bytes).sum();
            let over_count = self.entries.len() >= self.max;
            let over_budget = self
                .budget
                .is_some_and(|budget| used.saturating_add(incoming) > budget);
            if !over_count && !over_budget {
                break;
            }
            let entry = self.entries.remove(0);
            evicted.push(entry.name);
        }
        evicted
    }

    pub fn insert(&mut self, loaded: Loaded) {
        self.entries.retain(|entry| entry.name != loaded.name);
        self.entries.push(loaded);
    }

    /// Loaded names, least recently used first.
    pub fn names(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|entry| entry.name.clone())
            .collect()
    }
}

/// The weights' size on disk: a file's length, or the `.safetensors` files of a folder (two levels deep,
/// as a diffusers folder keeps them); 0 when unknown (a hub id).
pub(crate) fn estimated_bytes(path: &str) -> u64 {
    fn walk(dir: &Path, depth: usize) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .filter_map(Result::ok)
            .map(|entry| {
                let path = entry.path();
                if path.is_dir() && depth > 0 {
                    walk(&path, depth - 1)
                } else if path.extension().is_some_and(|ext| ext == "safetensors") {
                    entry.metadata().map_or(0, |meta| meta.len())
                } else {
                    0
                }
            })
            .sum()
    }
    let path = Path::new(path);
    if path.is_file() {
        std::fs::metadata(path).map_or(0, |meta| meta.len())
    } else {
        walk(path, 1)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fake::FakeBackend;

    fn loaded(name: &str, bytes: u64) -> Loaded {
        Loaded {
            name: name.into(),
            backend: Box::new(FakeBackend::new(std::time::Duration::ZERO)),
            bytes,
        }
    }

    /// Runs `queue` in the scheduling rule's order (FIFO) on a set of `max` models; returns the loads.
    fn loads_for(queue: &[&str], max: usize) -> Vec<String> {
        let mut models = LoadedModels::new(max, None);
        let mut loads = Vec::new();
        for &name in queue {
            if models.touch(name).is_none() {
                models.make_room(0);
                models.insert(loaded(name, 0));
                loads.push(name.to_owned());
            }
        }
        loads
    }

    #[test]
    fn fifo_runs_consecutive_jobs_of_one_model_without_reloading() {
        assert_eq!(
            loads_for(&["a", "a", "b", "b", "b", "a"], 1),
            ["a", "b", "a"]
        );
        // Two slots: interleaved jobs load each model once.
        assert_eq!(loads_for(&["a", "b", "a", "b", "a"], 2), ["a", "b"]);
        // Three models in two slots: the least recently used one goes.
        assert_eq!(
            loads_for(&["a", "b", "a", "c", "a", "b"], 2),
            ["a", "b", "c", "b"]
        );
    }

    #[test]
    fn the_budget_evicts_before_the_count_does() {
        let mut models = LoadedModels::new(3, Some(100));
        models.insert(loaded("a", 40));
        models.insert(loaded("b", 40));
        assert!(models.touch("a").is_some());
        // 80 used + 30 incoming > 100: the least recently used (b) goes.
        assert_eq!(models.make_room(30), ["b"]);
        models.insert(loaded("c", 30));
        assert_eq!(models.names(), ["a", "c"]);
        // A model bigger than the budget empties the set and still loads.
        assert_eq!(models.make_room(500), ["a", "c"]);
    }
}
