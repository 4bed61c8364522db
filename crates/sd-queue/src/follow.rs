//! A job's event stream for SSE through any gateway: the whole history from Redis (`XRANGE`), then a thread
//! that follows new entries (`XREAD BLOCK`) into the broadcast channel the SSE layer already reads. The
//! thread ends at the terminal event, when the job's events expire, or when the subscriber goes away.

use std::time::Duration;

use redis::Commands;
use sd_engine::{JobEvent, Subscription};
use tokio::sync::broadcast;

use crate::conn::{keys, Redis};

/// How long one `XREAD` waits for new events before the follower checks that anyone still listens.
const BLOCK: Duration = Duration::from_millis(1000);
/// Events a slow subscriber may fall behind by (it skips progress, never the terminal event).
const BUFFER: usize = 256;

type Entries = Vec<(String, Vec<(String, String)>)>;

fn parse(entries: Entries) -> Vec<(String, JobEvent)> {
    entries
        .into_iter()
        .filter_map(|(id, fields)| {
            let json = fields.into_iter().find(|(name, _)| name == "e")?.1;
            match serde_json::from_str::<JobEvent>(&json) {
                Ok(event) => Some((id, event)),
                Err(error) => {
                    tracing::warn!(%error, "skipping an event that does not parse");
                    None
                }
            }
        })
        .collect()
}

/// The job's events so far and, unless it already finished, a receiver of the ones to come; `None` for an
/// unknown (or expired) job, or when Redis cannot be reached.
pub fn subscribe(redis: &Redis, id: &str) -> Option<Subscription> {
    let history = redis.run(|connection| -> redis::RedisResult<Option<Entries>> {
        if !connection.exists::<_, bool>(keys::job(id))? {
            return Ok(None);
        }
        redis::cmd("XRANGE")
            .arg(keys::events(id))
            .arg("-")
            .arg("+")
            .query(connection)
            .map(Some)
    });
    let history = match history {
        Ok(Some(entries)) => parse(entries),
        Ok(None) => return None,
        Err(error) => {
            tracing::warn!(job = %id, %error, "cannot read the job's events from Redis");
            return None;
        }
    };
    let last = history
        .last()
        .map_or_else(|| "0-0".to_owned(), |(entry, _)| entry.clone());
    let finished = history.iter().any(|(_, event)| event.is_terminal());
    let snapshot: Vec<JobEvent> = history.into_iter().map(|(_, event)| event).collect();
    if finished {
        return Some(Subscription {
            snapshot,
            live: None,
        });
    }
    let (sender, receiver) = broadcast::channel(BUFFER);
    let connection = match redis.connect(BLOCK * 3) {
        Ok(connection) => connection,
        Err(error) => {
            tracing::warn!(job = %id, %error, "cannot follow the job's events");
            return None;
        }
    };
    let events = keys::events(id);
    let spawned = std::thread::Builder::new()
        .name("sd-queue-follow".into())
        .spawn(move || follow(connection, events, last, sender));
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start an event follower");
        return None;
    }
    Some(Subscription {
        snapshot,
        live: Some(receiver),
    })
}

fn follow(
    mut connection: redis::Connection,
    events: String,
    mut last: String,
    sender: broadcast::Sender<JobEvent>,
) {
    let mut failures = 0;
    while sender.receiver_count() > 0 {
        let read: redis::RedisResult<Option<Vec<(String, Entries)>>> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(100)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&events)
            .arg(&last)
            .query(&mut connection);
        match read {
            Ok(Some(streams)) => {
                failures = 0;
                for (_, entries) in streams {
                    for (id, event) in parse(entries) {
                        last = id;
                        let terminal = event.is_terminal();
                        let _ = sender.send(event);
                        if terminal {
                            return;
                        }
                    }
                }
            }
            Ok(None) => {
                // Nothing new: stop if the job expired meanwhile.
                match connection.exists::<_, bool>(&events) {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(error) => {
                        tracing::debug!(%error, "event follower cannot check the job");
                    }
                }
            }
            Err(error) => {
                // Redis went away: subscribers keep waiting a while, then the stream ends (and `[DONE]`).
                failures += 1;
                if failures > 30 {
                    tracing::warn!(%error, "giving up following a job's events");
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}
