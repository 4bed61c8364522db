/**
 * The app in headless Chromium against a worker (the mock by default; the real binary with SD_WORKER_BIN):
 * the LoRA list adding its tag to the prompt, generate with progress then the image, cancel, an invalid field, img2img from the gallery, paint a mask
 * and inpaint, reload with the gallery intact, the phone layout, and the API-key prompt. The tests in the
 * first block share one browser profile and run in order, as one person's session would.
 */
import { readFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Locator, Page } from 'playwright-core';
import { encodePng } from '../mock-server/png.mjs';
import { openBrowser, screenshot, type Browser } from './browser';
import { startTarget, type Target } from './target';

let target: Target;
let browser: Browser;
let page: Page;

const galleryItems = () => page.getByTestId('gallery-item');

async function openAdvanced() {
  const advanced = page.locator('details.advanced');
  if (!(await advanced.evaluate((el) => (el as HTMLDetailsElement).open))) await advanced.locator('summary').click();
}

async function setField(label: string, value: string) {
  await openAdvanced();
  await page.getByLabel(label, { exact: true }).fill(value);
}

/** Steps and a sampler that take one model call per step, so progress counts to the steps asked for (PNDM,
 * the real worker's default, takes one more call than its steps). */
async function setStepsOneCallEach(steps: number) {
  await openAdvanced();
  await page.getByLabel('Sampler', { exact: true }).selectOption('euler');
  await setField('Steps', String(steps));
}

/** Enough steps that a job is still running when the test acts on it: the tiny real model takes ~25 ms a
 * step, so 150 (the worker's most) last seconds; the mock takes 80 ms a step anyway. */
const longJobSteps = () => (target.kind === 'mock' ? 40 : 150);

function solidPng(width: number, height: number): Buffer {
  return encodePng(width, height, new Uint8Array(width * height * 4).fill(90));
}

/** Share of the mask canvas painted (alpha over half). */
function paintedFraction(canvas: Locator): Promise<number> {
  return canvas.evaluate((element) => {
    const c = element as HTMLCanvasElement;
    const data = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
    let painted = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i]! > 127) painted++;
    return painted / (data.length / 4);
  });
}

async function waitForStatus(pattern: RegExp, timeout = 60_000) {
  await page.waitForFunction(
    (source) => new RegExp(source).test(document.querySelector('[role="status"]')?.textContent ?? ''),
    pattern.source,
    { timeout },
  );
}

describe('the app, one session', () => {
  beforeAll(async () => {
    target = await startTarget();
    browser = await openBrowser();
    page = browser.page;
  });

  afterAll(async () => {
    await browser?.close();
    await target?.stop();
  });

  afterEach(async (context) => {
    if (context.task.result?.state === 'fail') await screenshot(page, `FAILED-${context.task.name.replace(/\W+/g, '-')}`);
  });

  it('starts with defaults from /v1/info and an empty gallery', async () => {
    await page.goto(target.url);
    await page.getByTestId('model-name').filter({ hasNotText: 'connecting' }).waitFor();
    const info = (await (await fetch(`${target.url}/v1/info`)).json()) as { model: string; defaults?: { steps?: number } };
    // The model's name, never the server's path to it.
    const shown = (await page.getByTestId('model-name').textContent()) ?? '';
    const name = info.model.replace(/\/+$/, '').split('/').pop()!;
    expect(shown).toContain(name);
    if (info.model.includes('/')) expect(shown).not.toContain(info.model);
    await page.locator('details.advanced summary').click();
    // Samplers go by the names people know; the value sent stays our id.
    expect(await page.getByLabel('Sampler', { exact: true }).locator('option[value="dpmpp_2m_karras"]').textContent()).toBe('DPM++ 2M Karras');
    if (info.defaults?.steps) expect(await page.getByLabel('Steps', { exact: true }).inputValue()).toBe(String(info.defaults.steps));
    await page.getByTestId('gallery-empty').waitFor();
    await screenshot(page, '01-txt2img-empty');
  });

  it('lists the worker’s LoRAs; a click adds <lora:NAME:1> to the end of the prompt', async () => {
    const { loras } = (await (await fetch(`${target.url}/v1/loras`)).json()) as { loras: { name: string }[] };
    // The mock and the binary run (--lora-dir tests/fixtures/loras/tiny-sd1) have it; an external worker may not.
    if (target.kind === 'external' && !loras.some((l) => l.name === 'kohya_attn')) return;
    const picker = page.getByTestId('lora-picker');
    await picker.getByRole('button', { name: 'kohya_attn', exact: true }).waitFor();
    expect(await picker.getByRole('button').allTextContents()).toEqual(loras.map((l) => l.name));
    const prompt = page.getByLabel('Prompt', { exact: true });
    await prompt.fill('a fox');
    await picker.getByRole('button', { name: 'kohya_attn', exact: true }).click();
    expect(await prompt.inputValue()).toBe('a fox <lora:kohya_attn:1>');
    await prompt.fill('');
    await picker.getByRole('button', { name: 'kohya_attn', exact: true }).click();
    expect(await prompt.inputValue()).toBe('<lora:kohya_attn:1>');
    await screenshot(page, '01b-lora-picker');
    await prompt.fill('');
  });

  it('generates: progress and a live preview, then the image, saved to the gallery', async () => {
    await page.getByLabel('Prompt', { exact: true }).fill('a red lighthouse on a cliff');
    await page.getByLabel('Prompt', { exact: true }).press('Control+Enter');
    await waitForStatus(/Step \d+ of \d+/);
    const progress = page.getByRole('progressbar');
    await progress.waitFor();
    expect(Number(await progress.getAttribute('aria-valuenow'))).toBeGreaterThan(0);
    if (target.kind === 'mock') await page.getByTestId('preview').waitFor();
    await screenshot(page, '02-txt2img-progress');
    await page.getByTestId('result-image').first().waitFor({ timeout: 60_000 });
    await waitForStatus(/Done/);
    expect(await galleryItems().count()).toBe(1);
    const [natural, shown] = await page
      .getByTestId('result-image')
      .first()
      .evaluate((img) => [(img as HTMLImageElement).naturalWidth, img.getBoundingClientRect().width]);
    expect(natural).toBeGreaterThan(0);
    // A result smaller than the view is scaled up to it, not left tiny.
    if (natural < 300) expect(shown).toBeGreaterThan(natural * 1.5);
    await screenshot(page, '03-txt2img-done');
  });

  it('downloads the worker’s PNG byte for byte, its parameters inside once', async () => {
    const [download] = await Promise.all([page.waitForEvent('download'), galleryItems().first().getByRole('button', { name: /Download/ }).click()]);
    const bytes = readFileSync((await download.path())!);
    // The session's only finished job so far.
    const { jobs } = (await (await fetch(`${target.url}/v1/jobs`)).json()) as { jobs: { id: string; status: string }[] };
    const jobId = jobs.find((job) => job.status === 'succeeded')!.id;
    const served = Buffer.from(await (await fetch(`${target.url}/v1/jobs/${jobId}/images/0`)).arrayBuffer());
    expect(bytes.equals(served)).toBe(true);
    const text = bytes.toString('latin1');
    expect(text.split('tEXtparameters').length - 1).toBe(1);
    expect(text).toContain('a red lighthouse on a cliff');
    expect(text).toMatch(/Seed: \d+/);
  });

  it('shows the queue position while another job runs, and cancels a running job', async () => {
    // Someone else's long job holds the worker, so ours waits in the queue.
    const blocker = (await (
      await fetch(`${target.url}/v1/jobs`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        // 128×128 at the most steps: ~15 s on the real tiny model, so it outlasts the wait for our queued job.
        body: JSON.stringify({ operation: 'image_generation', prompt: 'a long job', steps: 150, width: 128, height: 128 }),
      })
    ).json()) as { job_id: string };
    await setStepsOneCallEach(150);
    await page.getByRole('button', { name: 'Generate' }).click();
    await waitForStatus(/Queued: position 1/);
    await screenshot(page, '04-txt2img-queued');
    await fetch(`${target.url}/v1/jobs/${blocker.job_id}`, { method: 'DELETE' });
    await waitForStatus(/Step \d+ of 150/);
    await page.getByRole('button', { name: 'Cancel' }).click();
    await waitForStatus(/Cancelled/);
    await screenshot(page, '05-txt2img-cancelled');
    expect(await galleryItems().count()).toBe(1);
  });

  it('shows a field the worker rejected at that field', async () => {
    await setField('Steps', '500');
    await page.getByRole('button', { name: 'Generate' }).click();
    const error = page.locator('#steps-error');
    await error.waitFor();
    expect(await error.textContent()).toMatch(/steps/i);
    expect(await page.getByLabel('Steps', { exact: true }).getAttribute('aria-invalid')).toBe('true');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('field-steps');
    await screenshot(page, '06-invalid-steps');
    await setField('Steps', target.kind === 'mock' ? '12' : '4');
  });

  it('points at the gallery button that sends a picture to each mode', async () => {
    await page.getByRole('link', { name: 'Inpaint' }).click();
    await page.waitForURL(/\/inpaint$/);
    await page.getByText('Or press “Inpaint” under a picture in the gallery below.').waitFor();
    await page.getByRole('link', { name: 'Image to image' }).click();
    await page.waitForURL(/\/img2img$/);
    await page.getByText('Or press “Img2img” under a picture in the gallery below.').waitFor();
  });

  it('takes a picture from a file or a drop on the img2img screen', async () => {
    await page.getByRole('link', { name: 'Image to image' }).click();
    await page.waitForURL(/\/img2img$/);
    await page.getByTestId('image-file').setInputFiles({ name: 'upload.png', mimeType: 'image/png', buffer: solidPng(100, 60) });
    // Sides are cut down to multiples of 8 and the form takes the picture's size.
    await page.getByText('96×56').waitFor();
    expect(await page.getByLabel('Width', { exact: true }).inputValue()).toBe('96');
    await page.locator('.dropzone').evaluate((zone, bytes) => {
      const transfer = new DataTransfer();
      transfer.items.add(new File([new Uint8Array(bytes)], 'dropped.png', { type: 'image/png' }));
      zone.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }, [...solidPng(64, 72)]);
    await page.getByText('64×72').waitFor();
  });

  it('sends a gallery image to img2img and transforms it', async () => {
    await galleryItems().first().getByRole('button', { name: /to image to image/ }).click();
    await page.waitForURL(/\/img2img$/);
    await page.getByAltText('Starting picture').waitFor();
    await page.getByLabel(/^Strength/).fill('0.6');
    await page.getByRole('button', { name: 'Transform' }).click();
    await page.getByTestId('result-image').first().waitFor({ timeout: 60_000 });
    await waitForStatus(/Done/);
    expect(await galleryItems().count()).toBe(2);
    expect(await galleryItems().first().textContent()).toContain('Image to image');
    if (target.mock) {
      const last = target.mock.submissions.at(-1)!;
      expect(last.body.operation).toBe('image_transform');
      expect(last.body.strength).toBe(0.6);
    }
    await screenshot(page, '07-img2img-done');
  });

  it('paints a mask with undo/redo and inpaints', async () => {
    await galleryItems().last().getByRole('button', { name: /to inpaint/ }).click();
    await page.waitForURL(/\/inpaint$/);
    const canvas = page.getByTestId('mask-canvas');
    await canvas.waitFor();
    // Inpainting's strength starts at 1.0, as the API's and the CLI's default, whatever img2img was set to.
    expect(await page.getByLabel(/^Strength/).inputValue()).toBe('1');
    // Submitting with no mask is refused at the mask, before anything is sent.
    await page.getByRole('button', { name: 'Inpaint', exact: true }).click();
    await page.locator('#mask-error').waitFor();
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('field-mask');
    await canvas.scrollIntoViewIfNeeded();
    const box = (await canvas.boundingBox())!;
    await page.mouse.move(box.x + box.width * 0.3, box.y + box.height * 0.3);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.7, box.y + box.height * 0.5, { steps: 8 });
    await page.mouse.up();
    const painted = () => paintedFraction(canvas);
    const afterStroke = await painted();
    expect(afterStroke).toBeGreaterThan(0.02);
    await page.getByRole('button', { name: 'Undo' }).click();
    expect(await painted()).toBe(0);
    await page.getByRole('button', { name: 'Redo' }).click();
    expect(await painted()).toBeCloseTo(afterStroke, 5);
    await screenshot(page, '08-inpaint-mask');
    await page.getByRole('button', { name: 'Inpaint', exact: true }).click();
    await page.getByTestId('result-image').first().waitFor({ timeout: 60_000 });
    await waitForStatus(/Done/);
    expect(await galleryItems().count()).toBe(3);
    if (target.mock) {
      const last = target.mock.submissions.at(-1)!;
      expect(last.body.operation).toBe('image_inpaint');
      expect(last.maskWhiteFraction).toBeGreaterThan(0.02);
      expect(last.maskWhiteFraction).toBeLessThan(0.6);
    }
    await screenshot(page, '09-inpaint-done');
  });

  it('keeps the gallery across a reload, and re-uses parameters', async () => {
    await page.reload();
    await galleryItems().nth(2).waitFor();
    expect(await galleryItems().count()).toBe(3);
    await screenshot(page, '10-after-reload');
    await galleryItems().last().getByRole('button', { name: /Re-use/ }).click();
    await page.waitForURL((url) => url.pathname === '/');
    expect(await page.getByLabel('Prompt', { exact: true }).inputValue()).toBe('a red lighthouse on a cliff');
    expect(await page.getByLabel('Lock').isChecked()).toBe(true);
  });

  it('deletes a gallery image', async () => {
    await galleryItems().first().getByRole('button', { name: /^Delete/ }).click();
    await page.getByRole('button', { name: 'Really delete?' }).click();
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="gallery-item"]').length === 2);
    await page.reload();
    await galleryItems().nth(1).waitFor();
    expect(await galleryItems().count()).toBe(2);
  });

  it('picks a running job up again after a reload, and saves its image', async () => {
    await page.getByLabel('Prompt', { exact: true }).fill('a job that outlives its page');
    const steps = longJobSteps();
    await setStepsOneCallEach(steps);
    await page.getByRole('button', { name: 'Generate' }).click();
    await waitForStatus(new RegExp(`Step \\d+ of ${steps}`));
    await page.reload();
    await waitForStatus(new RegExp(`Step \\d+ of ${steps}|Done`));
    await page.getByTestId('result-image').first().waitFor({ timeout: 60_000 });
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="gallery-item"]').length === 3);
    expect(await galleryItems().first().textContent()).toContain('a job that outlives its page');
    await page.reload();
    await galleryItems().nth(2).waitFor();
    expect(await galleryItems().count()).toBe(3); // saved once, not again on the next load
    expect(await page.getByRole('status').textContent()).toBe('Ready.');
  });

  it('fits a phone screen', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    for (const [path, name] of [['/', '11-phone-txt2img'], ['/img2img', '12-phone-img2img'], ['/inpaint', '13-phone-inpaint']] as const) {
      await page.goto(`${target.url}${path}`);
      await page.getByTestId('model-name').filter({ hasNotText: 'connecting' }).waitFor();
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      expect(overflow, `${path} scrolls sideways`).toBeLessThanOrEqual(0);
      await screenshot(page, name);
    }
    await galleryItems().first().getByRole('button', { name: /to inpaint/ }).click();
    await page.getByTestId('mask-canvas').waitFor();
    const canvas = page.getByTestId('mask-canvas');
    await canvas.scrollIntoViewIfNeeded();
    const box = (await canvas.boundingBox())!;
    expect(box.width).toBeLessThanOrEqual(390);
    const cdp = await page.context().newCDPSession(page);
    const at = (fx: number, fy: number) => ({ x: box.x + box.width * fx, y: box.y + box.height * fy });

    // A finger: real touch events, which the browser turns into pointer events of type "touch".
    await cdp.send('Emulation.setTouchEmulationEnabled', { enabled: true, maxTouchPoints: 1 });
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [at(0.2, 0.2)] });
    for (const f of [0.3, 0.4, 0.5]) await cdp.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: [at(f, 0.2)] });
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
    const touched = await paintedFraction(canvas);
    expect(touched).toBeGreaterThan(0.01);
    await screenshot(page, '14-phone-inpaint-editor');

    // A pen: a light stroke is thinner than a firm one.
    const penStroke = async (force: number, fy: number) => {
      await page.getByRole('button', { name: 'Clear' }).click();
      const send = (type: 'mousePressed' | 'mouseMoved' | 'mouseReleased', fx: number) =>
        cdp.send('Input.dispatchMouseEvent', { type, ...at(fx, fy), button: 'left', buttons: type === 'mouseReleased' ? 0 : 1, clickCount: 1, pointerType: 'pen', force });
      await send('mousePressed', 0.2);
      for (const fx of [0.35, 0.5, 0.65, 0.8]) await send('mouseMoved', fx);
      await send('mouseReleased', 0.8);
      return paintedFraction(canvas);
    };
    const light = await penStroke(0.1, 0.5);
    const firm = await penStroke(1, 0.5);
    expect(light).toBeGreaterThan(0);
    expect(firm).toBeGreaterThan(light * 1.5);
    await cdp.detach();
  });

  it('can be driven from the keyboard alone', async () => {
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.goto(target.url);
    await page.getByTestId('model-name').filter({ hasNotText: 'connecting' }).waitFor();
    await page.keyboard.press('Tab'); // skip link
    await page.keyboard.press('Enter');
    const seen: string[] = [];
    for (let i = 0; i < 12; i++) {
      await page.keyboard.press('Tab');
      seen.push(await page.evaluate(() => document.activeElement?.getAttribute('name') ?? document.activeElement?.textContent ?? ''));
    }
    expect(seen).toContain('prompt');
    expect(seen).toContain('negative_prompt');
    const focusStyle = await page.evaluate(() => getComputedStyle(document.activeElement!).outlineStyle);
    expect(focusStyle).not.toBe('none');
  });
});

describe('a worker with an API key', () => {
  let keyed: Target;
  let keyedBrowser: Browser;

  beforeAll(async () => {
    keyed = await startTarget({ apiKey: 'e2e-secret' });
    keyedBrowser = await openBrowser();
  });

  afterAll(async () => {
    await keyedBrowser?.close();
    await keyed?.stop();
  });

  it('asks for the key, then works with it', async () => {
    const p = keyedBrowser.page;
    await p.goto(keyed.url);
    const dialog = p.getByRole('dialog', { name: 'API key needed' });
    await dialog.waitFor();
    await screenshot(p, '15-api-key-prompt');
    await p.getByLabel('API key', { exact: true }).fill('wrong');
    await p.getByRole('button', { name: 'Save key' }).click();
    await p.getByText('That key was refused.').waitFor();
    await p.getByLabel('API key', { exact: true }).fill('e2e-secret');
    await p.getByRole('button', { name: 'Save key' }).click();
    await dialog.waitFor({ state: 'hidden' });
    await p.getByTestId('model-name').filter({ hasNotText: /connecting|not connected/ }).waitFor();
    await p.getByLabel('Prompt', { exact: true }).fill('a key-protected cat');
    await p.getByRole('button', { name: 'Generate' }).click();
    await p.getByTestId('result-image').first().waitFor({ timeout: 60_000 });
  });
});
