//! Stopping a generation inside a step. The step callback can only stop a run between steps, and one UNet step
//! of a large image on a CPU takes minutes; so the caller may set a flag for the duration of a call
//! ([`scope`]) and the UNet checks it between its blocks ([`check`]), ending the run with
//! [`CoreError::Cancelled`]. The flag is per thread, because a generation runs on its caller's thread: this
//! keeps every pipeline signature as it is and costs one atomic load per block.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::{CoreError, Result};

thread_local! {
    static FLAG: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
}

/// Runs `body` with `flag` as this thread's interrupt flag (restoring the previous one afterwards, even if
/// `body` panics).
pub fn scope<T>(flag: &Arc<AtomicBool>, body: impl FnOnce() -> T) -> T {
    struct Restore(Option<Arc<AtomicBool>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            FLAG.with(|slot| *slot.borrow_mut() = previous);
        }
    }
    let previous = FLAG.with(|slot| slot.borrow_mut().replace(Arc::clone(flag)));
    let _restore = Restore(previous);
    body()
}

/// `Err(Cancelled)` when this thread's interrupt flag is set; `Ok` when it is not, or when there is none.
pub fn check() -> Result<()> {
    let set = FLAG.with(|slot| {
        slot.borrow()
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::Relaxed))
    });
    if set {
        Err(CoreError::Cancelled)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_applies_inside_its_scope_only() {
        assert!(check().is_ok());
        let flag = Arc::new(AtomicBool::new(false));
        scope(&flag, || {
            assert!(check().is_ok());
            flag.store(true, Ordering::SeqCst);
            assert!(matches!(check(), Err(CoreError::Cancelled)));
        });
        assert!(check().is_ok());
    }
}
