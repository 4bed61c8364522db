//! The bounded FIFO of jobs waiting for the model thread. It holds ids only; positions count from 1.

use std::collections::VecDeque;

use crate::job::JobId;

#[derive(Debug)]
pub(crate) struct JobQueue {
    waiting: VecDeque<JobId>,
    capacity: usize,
}

/// The queue has no room; the caller should come back later.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct QueueFull;

impl JobQueue {
    pub fn new(capacity: usize) -> Self {
        Self {
            waiting: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Appends `id`, returning its position.
    pub fn push(&mut self, id: JobId) -> Result<usize, QueueFull> {
        if self.waiting.len() >= self.capacity {
            return Err(QueueFull);
        }
        self.waiting.push_back(id);
        Ok(self.waiting.len())
    }

    pub fn pop(&mut self) -> Option<JobId> {
        self.waiting.pop_front()
    }

    /// Takes `id` out of the line; false when it was not waiting.
    pub fn remove(&mut self, id: &str) -> bool {
        match self.waiting.iter().position(|waiting| waiting == id) {
            Some(index) => self.waiting.remove(index).is_some(),
            None => false,
        }
    }

    pub fn position(&self, id: &str) -> Option<usize> {
        self.waiting
            .iter()
            .position(|waiting| waiting == id)
            .map(|index| index + 1)
    }

    /// Every waiting job with its position, front first.
    pub fn positions(&self) -> impl Iterator<Item = (&JobId, usize)> {
        self.waiting
            .iter()
            .enumerate()
            .map(|(index, id)| (id, index + 1))
    }

    pub fn drain(&mut self) -> Vec<JobId> {
        self.waiting.drain(..).collect()
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_with_positions_and_a_bound() {
        let mut queue = JobQueue::new(2);
        assert_eq!(queue.push("a".into()), Ok(1));
        assert_eq!(queue.push("b".into()), Ok(2));
        assert_eq!(queue.push("c".into()), Err(QueueFull));
        assert_eq!(queue.position("b"), Some(2));
        assert!(queue.remove("a"));
        assert!(!queue.remove("a"));
        assert_eq!(queue.position("b"), Some(1));
        assert_eq!(queue.push("c".into()), Ok(2));
        assert_eq!(queue.pop().as_deref(), Some("b"));
        assert_eq!(queue.pop().as_deref(), Some("c"));
        assert_eq!(queue.len(), 0);
    }
}
