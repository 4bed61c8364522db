// A small stand-in for `sd-worker serve` that speaks the native job API (jobs, SSE, cancel, images, info,
// validation errors, bearer auth) and serves the built UI, for SDK tests and UI work without a model. It
// "generates" deterministic pictures from the seed so results can be told apart.
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';
import { randomUUID } from 'node:crypto';
import { decodePng, encodePng } from './png.mjs';

// The worker's samplers (GET /v1/info lists the same names).
const SAMPLERS = ['ddim', 'pndm', 'euler', 'euler_a', 'heun', 'dpmpp_2m', 'dpmpp_2m_karras', 'unipc', 'lcm'];

const CONTENT_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.webmanifest': 'application/manifest+json',
};

/**
 * Starts the mock. Options: port (0 = any), apiKey, staticDir (built UI), stepDelayMs, defaults
 * (overrides of /v1/info defaults), inlineImages (complete carries base64 instead of image paths), loras
 * (names GET /v1/loras lists; default: those of tests/fixtures/loras/tiny-sd1, as the real e2e run uses).
 * Returns { url, close, submissions, jobs, dropNextStream(afterEvents) }.
 */
export async function startMockWorker(options = {}) {
  const {
    port = 0,
    host = '127.0.0.1',
    apiKey,
    staticDir,
    stepDelayMs = 60,
    inlineImages = false,
    keepAliveMs = 10_000,
    loras = ['kohya_attn', 'locon_conv', 'peft_attn'],
  } = options;
  const defaults = { steps: 20, guidance_scale: 7.5, width: 512, height: 512, sampler: 'euler', ...options.defaults };
  // Same shape as the real worker's GET /v1/info (crates/sd-server/src/routes/system.rs).
  const info = {
    model: 'mock-tiny-sd1',
    family: 'sd1',
    prediction_type: 'epsilon',
    device: 'cpu',
    dtype: 'f32',
    inpainting: false,
    size_multiple: 8,
    defaults,
    samplers: SAMPLERS,
    operations: ['image_generation', 'image_transform', 'image_inpaint'],
    limits: {
      max_prompt_chars: 2000, min_steps: 1, max_steps: 150, max_guidance_scale: 30, min_side: 64, max_side: 1024,
      max_pixels: 1024 * 1024, max_batch: 4, max_clip_skip: 2, max_image_bytes: 20 << 20, max_input_side: 4096,
      max_input_alloc: 512 << 20, max_body_bytes: 32 << 20,
    },
    queue: { max: 8, depth: 0, running: false },
    version: '0.0.0-mock',
  };

  const jobs = new Map();
  const queue = [];
  const submissions = [];
  const stats = { streams: 0 };
  let running = null;
  let dropAfter = null;

  function emit(job, type, data = {}) {
    job.eventCount += 1;
    const frame = `id: ${job.eventCount}\nevent: ${type}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const subscriber of job.subscribers) subscriber.write(frame);
    if (['complete', 'error', 'cancelled'].includes(type)) {
      for (const subscriber of job.subscribers) subscriber.end('data: [DONE]\n\n');
      job.subscribers.clear();
    }
  }

  function announcePositions() {
    queue.forEach((job, index) => {
      job.position = index + 1;
      emit(job, 'queued', { position: job.position });
    });
  }

  async function pump() {
    if (running || queue.length === 0) return;
    const job = queue.shift();
    running = job;
    announcePositions();
    job.status = 'running';
    job.position = null;
    job.startedAt = Date.now();
    emit(job, 'started', {});
    const total = job.request.steps;
    for (let step = 1; step <= total; step++) {
      await new Promise((resolve) => setTimeout(resolve, stepDelayMs));
      if (job.cancelRequested) break;
      const elapsed = Date.now() - job.startedAt;
      job.progress = { step, total, percent: Math.round((1000 * step) / total) / 10, eta_ms: Math.round((elapsed / step) * (total - step)) };
      emit(job, 'progress', job.progress);
      const preview = encodePng(32, 32, paint(job, 32, 32, step / total)).toString('base64');
      job.preview = { step, image: preview };
      emit(job, 'preview', job.preview);
    }
    if (job.cancelRequested) {
      job.status = 'cancelled';
      emit(job, 'cancelled', {});
    } else {
      const { width, height } = job.request;
      const count = job.request.batch;
      const seeds = Array.from({ length: count }, (_, i) => job.seed + i);
      const parameters = (seed) =>
        `${job.request.prompt ?? ''}\nSteps: ${job.request.steps}, Sampler: ${job.request.sampler ?? 'euler'}, Seed: ${seed}, Size: ${width}x${height}, Model: mock`;
      job.images = seeds.map((seed) => encodePng(width, height, paint({ ...job, seed }, width, height, 1), { parameters: parameters(seed) }));
      job.status = 'succeeded';
      job.result = {
        images: job.images.map((png, i) => (inlineImages ? png.toString('base64') : `/v1/jobs/${job.id}/images/${i}`)),
        seeds,
        timings: { queue_ms: job.startedAt - job.createdAt, total_ms: Date.now() - job.createdAt },
      };
      emit(job, 'complete', job.result);
    }
    running = null;
    job.finishedAt = Date.now();
    scheduleCleanup(job);
    pump();
  }

  function scheduleCleanup(job) {
    setTimeout(() => jobs.delete(job.id), 10 * 60_000).unref();
  }

  function paint(job, width, height, amount) {
    const hue = (job.seed * 47) % 360;
    const [r, g, b] = hsl(hue, 0.65, 0.55);
    const out = new Uint8Array(width * height * 4);
    const input = job.input;
    const mask = job.mask;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = (y * width + x) * 4;
        const dx = x / width - 0.5, dy = y / height - 0.5;
        const ring = Math.sqrt(dx * dx + dy * dy) < 0.3 ? 1 : 0.55;
        const shade = (0.6 + 0.4 * (y / height)) * ring;
        let px = [r * shade, g * shade, b * shade];
        px = px.map((v) => v * amount + 128 * (1 - amount));
        if (input) {
          const src = sample(input, x, y, width, height);
          const repaint = mask ? sample(mask, x, y, width, height)[0] >= 128 : true;
          const strength = job.request.strength;
          px = repaint ? px.map((v, c) => v * strength + src[c] * (1 - strength)) : src.slice(0, 3);
        }
        out[i] = px[0];
        out[i + 1] = px[1];
        out[i + 2] = px[2];
        out[i + 3] = 255;
      }
    }
    return out;
  }

  function sample(image, x, y, width, height) {
    const sx = Math.min(image.width - 1, Math.floor((x * image.width) / width));
    const sy = Math.min(image.height - 1, Math.floor((y * image.height) / height));
    const i = (sy * image.width + sx) * 4;
    return [image.rgba[i], image.rgba[i + 1], image.rgba[i + 2], image.rgba[i + 3]];
  }

  // Same field names and error codes as the real worker's validation (crates/sd-server/src/validate).
  function validate(body) {
    const fail = (field, message, code) => ({ code, message, field });
    if (typeof body !== 'object' || body === null || Array.isArray(body)) return fail(null, 'the body must be a JSON object', 'invalid_json');
    const operations = ['image_generation', 'image_transform', 'image_inpaint'];
    if (body.operation === undefined) return fail('operation', 'operation is required', 'missing_field');
    if (!operations.includes(body.operation)) return fail('operation', `operation must be one of ${operations.join(', ')}`, 'invalid_operation');
    if (typeof body.prompt !== 'string') return fail('prompt', 'prompt is required', 'missing_field');
    if (body.prompt.trim() === '') return fail('prompt', 'prompt must not be empty', 'empty_prompt');
    for (const field of ['prompt', 'negative_prompt']) {
      if (typeof body[field] === 'string' && body[field].length > info.limits.max_prompt_chars) {
        return fail(field, `${field} is longer than ${info.limits.max_prompt_chars} characters`, 'prompt_too_long');
      }
    }
    if (body.num_images !== undefined && body.batch === undefined) body.batch = body.num_images;
    const intIn = (field, code, lo, hi) => {
      const v = body[field];
      if (v === undefined) return null;
      if (!Number.isInteger(v) || v < lo || v > hi) return fail(field, `${field} must be between ${lo} and ${hi}, got ${v}`, code);
      return null;
    };
    const problem =
      intIn('steps', 'invalid_steps', info.limits.min_steps, info.limits.max_steps) ||
      intIn('batch', 'invalid_batch', 1, info.limits.max_batch) ||
      intIn('width', 'invalid_size', info.limits.min_side, info.limits.max_side) ||
      intIn('height', 'invalid_size', info.limits.min_side, info.limits.max_side);
    if (problem) return problem;
    if (body.seed !== undefined && body.seed !== -1 && (!Number.isInteger(body.seed) || body.seed < 0)) {
      return fail('seed', 'seed must be -1 (random) or between 0 and 2^64 - 1', 'invalid_seed');
    }
    for (const field of ['width', 'height']) {
      if (body[field] !== undefined && body[field] % info.size_multiple !== 0) {
        return fail(field, `${field} must be a multiple of ${info.size_multiple}, got ${body[field]}`, 'invalid_size');
      }
    }
    if (body.guidance_scale !== undefined && (typeof body.guidance_scale !== 'number' || body.guidance_scale < 0 || body.guidance_scale > 30)) {
      return fail('guidance_scale', 'guidance_scale must be between 0 and 30', 'invalid_guidance');
    }
    if (body.sampler !== undefined && !SAMPLERS.includes(body.sampler)) return fail('sampler', `unknown sampler "${body.sampler}"`, 'unknown_sampler');
    if (body.strength !== undefined && body.operation === 'image_generation') {
      return fail('strength', 'strength is only for image_transform and image_inpaint', 'unexpected_field');
    }
    if (body.strength !== undefined && (typeof body.strength !== 'number' || body.strength < 0 || body.strength > 1)) {
      return fail('strength', 'strength must be between 0 and 1', 'invalid_strength');
    }
    const used = { image_generation: [], image_transform: ['input_image'], image_inpaint: ['init_image', 'mask_image'] }[body.operation];
    for (const field of used) {
      if (typeof body[field] !== 'string' || body[field] === '') return fail(field, `${field} is required for ${body.operation}`, 'missing_field');
    }
    for (const field of ['input_image', 'init_image', 'mask_image']) {
      if (body[field] !== undefined && !used.includes(field)) return fail(field, `${field} is not used by this operation`, 'unexpected_field');
    }
    return null;
  }

  function decodeImageField(body, field) {
    const bytes = Buffer.from(body[field].replace(/^data:[^,]*,/, ''), 'base64');
    const isJpeg = bytes[0] === 0xff && bytes[1] === 0xd8;
    const isWebp = bytes.toString('ascii', 0, 4) === 'RIFF';
    const png = decodePng(bytes);
    if (!png && !isJpeg && !isWebp) return { error: { code: 'invalid_image', message: `${field} is not a PNG, JPEG or WebP image`, field } };
    return { image: png };
  }

  function submit(body) {
    const problem = validate(body);
    if (problem) return { status: problem.code === 'invalid_json' ? 400 : 422, body: { error: problem } };
    const request = {
      negative_prompt: '',
      steps: defaults.steps,
      guidance_scale: defaults.guidance_scale,
      width: defaults.width,
      height: defaults.height,
      sampler: defaults.sampler,
      batch: 1,
      strength: body.operation === 'image_inpaint' ? 1 : 0.8,
      ...body,
    };
    const job = {
      id: randomUUID(),
      request,
      status: 'queued',
      position: null,
      progress: null,
      preview: null,
      result: null,
      error: null,
      seed: body.seed === undefined || body.seed === -1 ? Math.floor(Math.random() * 2 ** 31) : body.seed,
      subscribers: new Set(),
      eventCount: 0,
      createdAt: Date.now(),
      cancelRequested: false,
    };
    for (const [field, key] of [['input_image', 'input'], ['init_image', 'input'], ['mask_image', 'mask']]) {
      if (body[field] === undefined) continue;
      const decoded = decodeImageField(body, field);
      if (decoded.error) return { status: 422, body: { error: decoded.error } };
      job[key] = decoded.image;
    }
    if (job.mask) {
      const { rgba } = job.mask;
      let white = 0;
      for (let i = 0; i < rgba.length; i += 4) if (rgba[i] >= 128) white++;
      job.maskWhiteFraction = white / (rgba.length / 4);
      if (white === 0) return { status: 422, body: { error: { code: 'empty_mask', message: 'mask_image is all black: nothing to repaint', field: 'mask_image' } } };
    }
    if (queue.length >= 8) return { status: 429, headers: { 'Retry-After': '2' }, body: { error: { code: 'queue_full', message: 'the queue is full', field: null } } };
    submissions.push({ id: job.id, body, maskWhiteFraction: job.maskWhiteFraction });
    jobs.set(job.id, job);
    queue.push(job);
    job.position = queue.length;
    emit(job, 'queued', { position: job.position });
    setImmediate(pump);
    const seeds = Array.from({ length: request.batch }, (_, i) => job.seed + i);
    return {
      status: 202,
      body: { job_id: job.id, sse_url: `/v1/jobs/${job.id}/stream`, status_url: `/v1/jobs/${job.id}`, status: 'queued', position: job.position, seeds },
    };
  }

  function jobInfo(job) {
    const iso = (ms) => (ms ? new Date(ms).toISOString() : null);
    const view = {
      id: job.id,
      operation: job.request.operation,
      status: job.status,
      seeds: Array.from({ length: job.request.batch }, (_, i) => job.seed + i),
      created_at: iso(job.createdAt),
      started_at: iso(job.startedAt),
      finished_at: iso(job.finishedAt),
    };
    if (job.position) view.position = job.position;
    if (job.progress) view.progress = job.progress;
    if (job.status === 'succeeded') view.result = { images: job.images.map((_, i) => `/v1/jobs/${job.id}/images/${i}`), seeds: job.result.seeds };
    if (job.error) view.error = job.error;
    if (job.result?.timings) view.timings = job.result.timings;
    return view;
  }

  function stream(req, res, job) {
    stats.streams += 1;
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
    let written = 0;
    const limit = dropAfter;
    dropAfter = null;
    const subscriber = {
      write(frame) {
        res.write(frame);
        written += 1;
        if (limit !== null && written >= limit) {
          job.subscribers.delete(subscriber);
          res.destroy();
        }
      },
      end(frame) {
        res.end(frame);
      },
    };
    res.write('retry: 200\n\n');
    const replay = [];
    if (job.status === 'queued') replay.push(['queued', { position: job.position }]);
    if (job.status !== 'queued') replay.push(['started', {}]);
    if (job.progress) replay.push(['progress', job.progress]);
    if (job.preview && job.status === 'running') replay.push(['preview', job.preview]);
    if (job.status === 'succeeded') replay.push(['complete', job.result]);
    if (job.status === 'cancelled') replay.push(['cancelled', {}]);
    if (job.status === 'failed') replay.push(['error', job.error]);
    for (const [type, data] of replay) {
      subscriber.write(`event: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
      if (res.destroyed) return;
    }
    if (['succeeded', 'cancelled', 'failed'].includes(job.status)) {
      res.end('data: [DONE]\n\n');
      return;
    }
    job.subscribers.add(subscriber);
    const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), keepAliveMs);
    res.on('close', () => {
      clearInterval(keepAlive);
      job.subscribers.delete(subscriber);
    });
  }

  function cancel(job) {
    if (['succeeded', 'failed', 'cancelled'].includes(job.status)) {
      return { status: 409, body: { error: { code: 'job_finished', message: `job ${job.id} already finished`, field: null } } };
    }
    if (job.status === 'queued') {
      queue.splice(queue.indexOf(job), 1);
      job.status = 'cancelled';
      job.position = null;
      emit(job, 'cancelled', {});
      announcePositions();
      scheduleCleanup(job);
    } else {
      job.cancelRequested = true;
      return { status: 200, body: { job_id: job.id, status: 'cancelling' } };
    }
    return { status: 200, body: { job_id: job.id, status: 'cancelled' } };
  }

  // Like crates/sd-server/src/ui.rs: the files of the bundle, and index.html for the app's pages only.
  async function serveStatic(res, pathname) {
    if (!staticDir) return false;
    const appPages = ['/', '/img2img', '/inpaint'];
    const relative = appPages.includes(pathname) ? '/index.html' : normalize(decodeURIComponent(pathname));
    if (relative.includes('..')) return false;
    const file = join(staticDir, relative);
    try {
      if (!(await stat(file)).isFile()) return false;
    } catch {
      return false;
    }
    const cache = relative.startsWith('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache';
    res.writeHead(200, { 'Content-Type': CONTENT_TYPES[extname(file)] ?? 'application/octet-stream', 'Cache-Control': cache });
    res.end(await readFile(file));
    return true;
  }

  function sendJson(res, status, body, headers = {}) {
    res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  }

  const server = createServer(async (req, res) => {
    try {
      const url = new URL(req.url, 'http://mock');
      const path = url.pathname;
      if (path === '/health') return sendJson(res, 200, { status: 'ok' });
      if (path === '/ready') return sendJson(res, 200, { ready: true });
      const isApi = path.startsWith('/v1/') || path === '/openapi.json' || path === '/metrics';
      if (!isApi) {
        if (req.method === 'GET' && (await serveStatic(res, path))) return;
        return sendJson(res, 404, { error: { code: 'not_found', message: `no route ${path}`, field: null } });
      }
      if (apiKey && req.headers.authorization !== `Bearer ${apiKey}`) {
        return sendJson(res, 401, { error: { code: 'unauthorized', message: 'missing or wrong API key', field: null } }, { 'WWW-Authenticate': 'Bearer' });
      }
      if (path === '/v1/info' && req.method === 'GET') {
        return sendJson(res, 200, { ...info, queue: { ...info.queue, depth: queue.length, running: running !== null } });
      }
      if (path === '/v1/loras' && req.method === 'GET') {
        // Same shape as the real worker's GET /v1/loras.
        return sendJson(res, 200, { loras: loras.map((name) => ({ name })) });
      }
      if (path === '/v1/jobs' && req.method === 'POST') {
        const chunks = [];
        for await (const part of req) chunks.push(part);
        let body;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          return sendJson(res, 400, { error: { code: 'invalid_json', message: 'the body is not valid JSON', field: null } });
        }
        const answer = submit(body);
        return sendJson(res, answer.status, answer.body, answer.headers);
      }
      if (path === '/v1/jobs' && req.method === 'GET') return sendJson(res, 200, { jobs: [...jobs.values()].map(jobInfo) });
      const match = /^\/v1\/jobs\/([^/]+)(?:\/(stream|images\/(\d+)))?$/.exec(path);
      const job = match && jobs.get(decodeURIComponent(match[1]));
      if (!job) return sendJson(res, 404, { error: { code: 'not_found', message: `no job ${match?.[1] ?? path}`, field: null } });
      if (match[2] === 'stream' && req.method === 'GET') return stream(req, res, job);
      if (match[3] !== undefined && req.method === 'GET') {
        const png = job.images?.[Number(match[3])];
        if (!png) return sendJson(res, 404, { error: { code: 'not_found', message: 'no such image', field: null } });
        res.writeHead(200, { 'Content-Type': 'image/png' });
        return res.end(png);
      }
      if (!match[2] && req.method === 'GET') return sendJson(res, 200, jobInfo(job));
      if (!match[2] && req.method === 'DELETE') {
        const answer = cancel(job);
        return sendJson(res, answer.status, answer.body);
      }
      return sendJson(res, 405, { error: { code: 'method_not_allowed', message: `${req.method} not allowed`, field: null } });
    } catch (error) {
      if (!res.headersSent) sendJson(res, 500, { error: { code: 'internal', message: String(error), field: null } });
    }
  });

  await new Promise((resolve) => server.listen(port, host, resolve));
  const address = server.address();
  return {
    url: `http://${host}:${address.port}`,
    submissions,
    jobs,
    stats,
    /** The next stream connection is cut after it has written this many frames. */
    dropNextStream(afterFrames) {
      dropAfter = afterFrames;
    },
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

function hsl(h, s, l) {
  const a = s * Math.min(l, 1 - l);
  const f = (n) => {
    const k = (n + h / 30) % 12;
    return 255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1)));
  };
  return [f(0), f(8), f(4)];
}
