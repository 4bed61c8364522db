//! A job's events as Server-Sent Events: the catch-up snapshot, then live events, ended by `data: [DONE]`.
//! A subscriber that falls behind skips progress it missed but always gets the terminal event.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::response::sse::Event;
use futures_util::Stream;
use sd_engine::{JobEvent, Subscription};
use tokio::sync::broadcast::{self, error::RecvError};

enum Phase {
    Replay {
        pending: VecDeque<JobEvent>,
        live: Option<broadcast::Receiver<JobEvent>>,
    },
    Live(broadcast::Receiver<JobEvent>),
    Done,
    Ended,
}

pub fn job_events(subscription: Subscription) -> impl Stream<Item = Result<Event, Infallible>> {
    let start = Phase::Replay {
        pending: subscription.snapshot.into(),
        live: subscription.live,
    };
    futures_util::stream::unfold(start, |phase| async move {
        next(phase).await.map(|(event, phase)| (Ok(event), phase))
    })
}

async fn next(mut phase: Phase) -> Option<(Event, Phase)> {
    loop {
        phase = match phase {
            Phase::Replay { mut pending, live } => match pending.pop_front() {
                Some(event) => {
                    let then = if event.is_terminal() {
                        Phase::Done
                    } else {
                        Phase::Replay { pending, live }
                    };
                    return Some((to_sse(&event), then));
                }
                None => live.map_or(Phase::Done, Phase::Live),
            },
            Phase::Live(mut live) => match live.recv().await {
                Ok(event) => {
                    let then = if event.is_terminal() {
                        Phase::Done
                    } else {
                        Phase::Live(live)
                    };
                    return Some((to_sse(&event), then));
                }
                Err(RecvError::Lagged(skipped)) => {
                    tracing::debug!(skipped, "slow SSE subscriber skipped events");
                    Phase::Live(live)
                }
                Err(RecvError::Closed) => Phase::Done,
            },
            Phase::Done => return Some((Event::default().data("[DONE]"), Phase::Ended)),
            Phase::Ended => return None,
        };
    }
}

fn to_sse(event: &JobEvent) -> Event {
    let named = Event::default().event(event.name());
    match serde_json::to_string(event) {
        Ok(json) => named.data(json),
        Err(error) => named.data(format!(
            "{{\"type\":\"{}\",\"serialize_error\":\"{error}\"}}",
            event.name()
        )),
    }
}
