/** Writes text metadata into a PNG (tEXt chunks after IHDR), so a downloaded image keeps its parameters the
 * way A1111 and ComfyUI tools read them (`parameters`). */

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** tEXt is Latin-1: anything outside it becomes '?', so prompts in other scripts also go in as iTXt. */
function textChunk(keyword: string, text: string): Uint8Array {
  const isLatin1 = [...text].every((ch) => ch.charCodeAt(0) < 256);
  const encoder = new TextEncoder();
  const body: number[] = [];
  const latin1 = (s: string) => [...s].map((ch) => (ch.charCodeAt(0) < 256 ? ch.charCodeAt(0) : 63));
  let type: string;
  if (isLatin1) {
    type = 'tEXt';
    body.push(...latin1(keyword), 0, ...latin1(text));
  } else {
    type = 'iTXt';
    body.push(...latin1(keyword), 0, 0, 0, 0, 0, ...encoder.encode(text));
  }
  const chunk = new Uint8Array(12 + body.length);
  const view = new DataView(chunk.buffer);
  view.setUint32(0, body.length);
  chunk.set([...type].map((c) => c.charCodeAt(0)), 4);
  chunk.set(body, 8);
  view.setUint32(8 + body.length, crc32(chunk.subarray(4, 8 + body.length)));
  return chunk;
}

/** The PNG with `texts` added right after its IHDR chunk; anything not a PNG comes back unchanged. */
export async function withPngText(png: Blob, texts: Record<string, string>): Promise<Blob> {
  const bytes = new Uint8Array(await png.arrayBuffer());
  const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (bytes.length < 33 || signature.some((b, i) => bytes[i] !== b)) return png;
  const ihdrEnd = 8 + 12 + new DataView(bytes.buffer).getUint32(8);
  const parts: BlobPart[] = [bytes.slice(0, ihdrEnd)];
  for (const [keyword, text] of Object.entries(texts)) parts.push(textChunk(keyword, text) as BlobPart);
  parts.push(bytes.slice(ihdrEnd));
  return new Blob(parts, { type: 'image/png' });
}

/** A1111's "parameters" text: prompt, negative prompt, then one line of settings. */
export function a1111Parameters(params: Record<string, unknown>, seed: number | null, model: string | null): string {
  const lines = [String(params.prompt ?? '')];
  if (params.negative_prompt) lines.push(`Negative prompt: ${String(params.negative_prompt)}`);
  const settings: string[] = [];
  if (params.steps !== undefined) settings.push(`Steps: ${String(params.steps)}`);
  if (params.sampler) settings.push(`Sampler: ${String(params.sampler)}`);
  if (params.guidance_scale !== undefined) settings.push(`CFG scale: ${String(params.guidance_scale)}`);
  if (seed !== null) settings.push(`Seed: ${seed}`);
  if (params.width && params.height) settings.push(`Size: ${String(params.width)}x${String(params.height)}`);
  if (model) settings.push(`Model: ${model}`);
  if (params.strength !== undefined) settings.push(`Denoising strength: ${String(params.strength)}`);
  lines.push(settings.join(', '));
  return lines.join('\n');
}
