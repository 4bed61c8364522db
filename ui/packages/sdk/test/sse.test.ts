import { describe, expect, it } from 'vitest';
import { DONE, SseParser, decodeJobEvent } from '../src/index.js';

describe('SseParser', () => {
  it('parses named events with JSON data and ids', () => {
    const parser = new SseParser();
    const messages = parser.feed('id: 1\nevent: progress\ndata: {"step":2,"total":4}\n\n');
    expect(messages).toEqual([{ event: 'progress', data: '{"step":2,"total":4}', id: '1' }]);
    expect(parser.lastId).toBe('1');
  });

  it('reassembles messages split at any byte, with CRLF and CR line ends', () => {
    const text = 'event: queued\r\ndata: {"position":3}\r\n\r\nevent: started\rdata: {}\r\rdata: [DONE]\n\n';
    for (let cut = 1; cut < text.length; cut++) {
      const parser = new SseParser();
      const messages = [...parser.feed(text.slice(0, cut)), ...parser.feed(text.slice(cut))];
      expect(messages.map((m) => [m.event, m.data]), `cut at ${cut}`).toEqual([
        ['queued', '{"position":3}'],
        ['started', '{}'],
        ['message', '[DONE]'],
      ]);
    }
  });

  it('joins multi-line data, ignores comments and unknown fields, keeps retry', () => {
    const parser = new SseParser();
    const messages = parser.feed(': keep-alive\n\nretry: 1500\nfoo: bar\ndata: a\ndata:b\n\n');
    expect(messages).toEqual([{ event: 'message', data: 'a\nb', id: undefined }]);
    expect(parser.retry).toBe(1500);
  });

  it('reads a long line split into many chunks in linear time (a base64 image event)', () => {
    const image = 'A'.repeat(4_000_000);
    const text = `event: complete\ndata: {"images":["${image}"],"seeds":[1]}\n\n`;
    const parser = new SseParser();
    const started = performance.now();
    const messages = [];
    for (let i = 0; i < text.length; i += 4096) messages.push(...parser.feed(text.slice(i, i + 4096)));
    const elapsed = performance.now() - started;
    expect(messages).toHaveLength(1);
    expect(messages[0]!.data).toBe(`{"images":["${image}"],"seeds":[1]}`);
    // Re-scanning the pending line on every chunk (quadratic) takes tens of seconds here.
    expect(elapsed).toBeLessThan(2000);
  });

  it('does not dispatch a message without data', () => {
    const parser = new SseParser();
    expect(parser.feed('event: started\n\n')).toEqual([]);
    expect(parser.feed('data: x\n\n')[0]?.event).toBe('message');
  });
});

describe('decodeJobEvent', () => {
  const msg = (event: string, data: string) => ({ event, data, id: undefined });

  it('reads every event type of the job stream', () => {
    expect(decodeJobEvent(msg('queued', '{"position":2}'))).toEqual({ type: 'queued', position: 2 });
    expect(decodeJobEvent(msg('started', ''))).toEqual({ type: 'started' });
    expect(decodeJobEvent(msg('progress', '{"step":5,"total":20,"percent":25,"eta_ms":900}'))).toEqual({
      type: 'progress', step: 5, total: 20, percent: 25, eta_ms: 900,
    });
    expect(decodeJobEvent(msg('preview', '{"step":5,"image":"iVBORw0"}'))).toEqual({ type: 'preview', step: 5, image: 'iVBORw0' });
    expect(decodeJobEvent(msg('complete', '{"images":["a",{"url":"/v1/jobs/j/images/1"}],"seeds":[7,8],"timings":{"total_ms":3}}'))).toEqual({
      type: 'complete', images: ['a', '/v1/jobs/j/images/1'], seeds: [7, 8], timings: { total_ms: 3 },
    });
    expect(decodeJobEvent(msg('error', '{"code":"oom","message":"out of memory"}'))).toEqual({ type: 'error', code: 'oom', message: 'out of memory' });
    expect(decodeJobEvent(msg('cancelled', '{}'))).toEqual({ type: 'cancelled' });
    expect(decodeJobEvent(msg('message', '[DONE]'))).toBe(DONE);
  });

  it('takes the type from the data when the event is unnamed, and ignores unknown events', () => {
    expect(decodeJobEvent(msg('message', '{"type":"progress","step":1,"total":2}'))).toMatchObject({ type: 'progress', percent: 50 });
    expect(decodeJobEvent(msg('message', '{"error":{"code":"x","message":"y"},"type":"error"}'))).toEqual({ type: 'error', code: 'x', message: 'y' });
    expect(decodeJobEvent(msg('heartbeat', '{}'))).toBeUndefined();
  });
});
