//! Resuming a job's event stream after a dropped connection without repeating events.
//!
//! The server's stream carries no event ids: a new subscription starts with a catch-up of the job's current
//! state (`queued` with the position; or `started`, the latest `progress` and `preview`; or the terminal
//! event), then live events. Every event kind is monotonic, so [`ResumeCursor`] remembers the newest of each
//! that was delivered and, on a reconnected stream, drops the catch-up events that are not newer. Progress
//! ticks that happened while disconnected are coalesced into the latest one, as the server does for a slow
//! subscriber; the terminal event is never lost, and nothing is delivered twice.

use sd_api_types::JobEvent;

#[derive(Clone, Debug, Default)]
pub struct ResumeCursor {
    position: Option<usize>,
    started: bool,
    step: Option<usize>,
    preview_step: Option<usize>,
    /// The model whose load was announced (a `loading` event), so a catch-up does not announce it again.
    loading: Option<String>,
    finished: bool,
    /// Set on reconnect: until an event newer than what was delivered arrives, events are catch-up.
    replaying: bool,
}

impl ResumeCursor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Call when a new connection to the stream opens after one that broke.
    pub fn reconnected(&mut self) {
        self.replaying = true;
    }

    /// Whether the job's terminal event was delivered.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Whether `event` is new (deliver it) or a repeat of what was already delivered (drop it).
    pub fn accept(&mut self, event: &JobEvent) -> bool {
        if self.finished {
            return false;
        }
        let new = match event {
            JobEvent::Queued { position } => {
                let repeat = self.started || (self.replaying && self.position == Some(*position));
                if !repeat {
                    self.position = Some(*position);
                }
                !repeat
            }
            JobEvent::Started {} => !std::mem::replace(&mut self.started, true),
            JobEvent::Loading { model } => {
                let repeat = self.step.is_some() || self.loading.as_ref() == Some(model);
                if !repeat {
                    self.loading = Some(model.clone());
                }
                !repeat
            }
            JobEvent::Progress { step, .. } => {
                // A live stream may repeat a step (PNDM's warm-up); a catch-up never brings anything newer
                // than the last step delivered unless the step moved on.
                let repeat = match self.step {
                    Some(last) if self.replaying => *step <= last,
                    Some(last) => *step < last,
                    None => false,
                };
                if !repeat {
                    self.started = true;
                    self.step = Some(*step);
                }
                !repeat
            }
            JobEvent::Preview { step, .. } => {
                let repeat = self.preview_step.is_some_and(|last| *step <= last);
                if !repeat {
                    self.preview_step = Some(*step);
                }
                !repeat
            }
            JobEvent::Complete { .. } | JobEvent::Error { .. } | JobEvent::Cancelled {} => {
                self.finished = true;
                true
            }
        };
        if new {
            self.replaying = false;
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(step: usize) -> JobEvent {
        JobEvent::Progress {
            step,
            total: 3,
            percent: step as f64 * 100.0 / 3.0,
            eta_ms: 0,
        }
    }

    #[test]
    fn live_repeats_of_a_step_pass_but_a_catch_up_of_the_same_step_does_not() {
        let mut cursor = ResumeCursor::new();
        assert!(cursor.accept(&JobEvent::Started {}));
        assert!(cursor.accept(&progress(3)));
        assert!(
            cursor.accept(&progress(3)),
            "PNDM repeats the last step live"
        );
        cursor.reconnected();
        assert!(!cursor.accept(&JobEvent::Started {}));
        assert!(!cursor.accept(&progress(3)));
        assert!(cursor.accept(&JobEvent::Cancelled {}));
        assert!(!cursor.accept(&JobEvent::Cancelled {}));
    }

    #[test]
    fn a_catch_up_that_moved_on_is_delivered_and_old_previews_are_not() {
        let mut cursor = ResumeCursor::new();
        assert!(cursor.accept(&JobEvent::Queued { position: 2 }));
        cursor.reconnected();
        assert!(!cursor.accept(&JobEvent::Queued { position: 2 }));
        assert!(cursor.accept(&JobEvent::Queued { position: 1 }));
        assert!(cursor.accept(&JobEvent::Started {}));
        assert!(cursor.accept(&progress(1)));
        let preview = JobEvent::Preview {
            step: 1,
            image: "x".into(),
        };
        assert!(cursor.accept(&preview));
        cursor.reconnected();
        assert!(!cursor.accept(&JobEvent::Started {}));
        assert!(cursor.accept(&progress(2)));
        assert!(!cursor.accept(&preview));
        assert!(!cursor.accept(&JobEvent::Queued { position: 1 }));
    }
}
