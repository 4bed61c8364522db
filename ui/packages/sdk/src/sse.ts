/**
 * A Server-Sent Events parser fed by a byte stream, written against the WHATWG "event stream" grammar.
 * It exists because `EventSource` cannot send an `Authorization` header; with this the SDK reads the stream
 * through `fetch`, which can.
 */

export interface SseMessage {
  /** The `event:` field, or `"message"` when the server sent none. */
  event: string;
  /** All `data:` lines of the message joined by `\n`. */
  data: string;
  /** The last `id:` seen on the stream so far (the spec's "last event ID buffer"). */
  id: string | undefined;
}

/** Incremental parser: feed it text chunks as they arrive and it returns the messages they complete. */
export class SseParser {
  /** Pieces of the line not yet ended: joined only when its end arrives, so a long line (a base64 image)
   * split over many chunks costs linear time. */
  private partial: string[] = [];
  private eventName = '';
  private dataLines: string[] = [];
  private hasData = false;
  private lastEventId: string | undefined;
  private retryMs: number | undefined;
  /** A chunk ending in `\r` may be the first half of `\r\n`; remember so the `\n` is not a second line end. */
  private pendingCarriageReturn = false;

  get lastId(): string | undefined {
    return this.lastEventId;
  }

  /** The reconnection delay the server asked for with `retry:`, if it did. */
  get retry(): number | undefined {
    return this.retryMs;
  }

  feed(chunk: string): SseMessage[] {
    if (this.pendingCarriageReturn && chunk.startsWith('\n')) {
      chunk = chunk.slice(1);
    }
    this.pendingCarriageReturn = false;
    const messages: SseMessage[] = [];
    let start = 0;
    for (let i = 0; i < chunk.length; i++) {
      const ch = chunk.charCodeAt(i);
      if (ch !== 10 && ch !== 13) continue; // \n, \r
      this.partial.push(chunk.slice(start, i));
      const line = this.partial.join('');
      this.partial = [];
      if (ch === 13) {
        if (i + 1 === chunk.length) {
          this.pendingCarriageReturn = true;
        } else if (chunk.charCodeAt(i + 1) === 10) {
          i++;
        }
      }
      start = i + 1;
      const message = this.line(line);
      if (message) messages.push(message);
    }
    if (start < chunk.length) this.partial.push(chunk.slice(start));
    return messages;
  }

  private line(line: string): SseMessage | undefined {
    if (line === '') return this.dispatch();
    if (line.startsWith(':')) return undefined; // comment / keep-alive
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'event':
        this.eventName = value;
        break;
      case 'data':
        this.dataLines.push(value);
        this.hasData = true;
        break;
      case 'id':
        if (!value.includes('\0')) this.lastEventId = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retryMs = Number(value);
        break;
      default:
        break; // unknown fields are ignored, as the spec says
    }
    return undefined;
  }

  private dispatch(): SseMessage | undefined {
    if (!this.hasData) {
      this.eventName = '';
      return undefined;
    }
    const message: SseMessage = {
      event: this.eventName || 'message',
      data: this.dataLines.join('\n'),
      id: this.lastEventId,
    };
    this.eventName = '';
    this.dataLines = [];
    this.hasData = false;
    return message;
  }
}
