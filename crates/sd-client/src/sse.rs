//! An incremental Server-Sent Events parser (the WHATWG `text/event-stream` rules the server's stream needs):
//! bytes go in as they arrive, in chunks split anywhere, and whole events come out. Shared by the native and
//! the wasm32 build, which both read the stream with `fetch`-style chunked bodies (`EventSource` cannot send
//! an `Authorization` header).

/// One dispatched event: its `event:` name (empty when none), `data:` lines joined by `\n`, and `id:`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
    pub id: Option<String>,
}

#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of a line not yet ended (a chunk may end anywhere, even inside a UTF-8 sequence).
    partial: Vec<u8>,
    event: String,
    data: Vec<String>,
    id: Option<String>,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds `chunk`; returns the events it completes, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for &byte in chunk {
            if byte == b'\n' {
                let mut line = std::mem::take(&mut self.partial);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                let line = String::from_utf8_lossy(&line).into_owned();
                if let Some(event) = self.line(&line) {
                    events.push(event);
                }
            } else {
                self.partial.push(byte);
            }
        }
        events
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None; // A comment: the server's keep-alive.
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => self.data.push(value.to_owned()),
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        if self.data.is_empty() {
            return None;
        }
        Some(SseEvent {
            event,
            data: std::mem::take(&mut self.data).join("\n"),
            id: self.id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_anywhere_come_out_whole() {
        let text = "event: progress\ndata: {\"step\":1}\n\n: keep-alive\n\nevent: complete\r\ndata: a\r\ndata: b\r\n\r\ndata: [DONE]\n\n";
        for split in 0..text.len() {
            let mut parser = SseParser::new();
            let (left, right) = text.as_bytes().split_at(split);
            let mut events = parser.feed(left);
            events.extend(parser.feed(right));
            assert_eq!(events.len(), 3, "split at {split}");
            assert_eq!(events[0].event, "progress");
            assert_eq!(events[0].data, "{\"step\":1}");
            assert_eq!(events[1].event, "complete");
            assert_eq!(events[1].data, "a\nb");
            assert_eq!(events[2].event, "");
            assert_eq!(events[2].data, "[DONE]");
        }
    }

    #[test]
    fn a_utf8_character_split_between_chunks_survives() {
        let text = "data: caf\u{e9}\n\n".as_bytes();
        let mut parser = SseParser::new();
        let mut events = parser.feed(&text[..9]);
        events.extend(parser.feed(&text[9..]));
        assert_eq!(events[0].data, "caf\u{e9}");
    }

    #[test]
    fn ids_are_kept_and_fields_without_colon_are_names() {
        let mut parser = SseParser::new();
        let events = parser.feed(b"id: 7\ndata\ndata:x\n\n");
        assert_eq!(events[0].id.as_deref(), Some("7"));
        assert_eq!(events[0].data, "\nx");
    }
}
