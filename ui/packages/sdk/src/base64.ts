/** Base64 and image-string helpers that work the same in browsers and Node 20 (both have atob/btoa). */

export function bytesToBase64(bytes: Uint8Array): string {
  let binary = '';
  const chunk = 0x8000; // keep String.fromCharCode's argument list small
  for (let i = 0; i < bytes.length; i += chunk) {
    binary += String.fromCharCode(...bytes.subarray(i, i + chunk));
  }
  return btoa(binary);
}

export function base64ToBytes(base64: string): Uint8Array {
  const binary = atob(base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** Base64 of a Blob/File, without a `data:` prefix, as the job API wants images. */
export async function blobToBase64(blob: Blob): Promise<string> {
  return bytesToBase64(new Uint8Array(await blobBytes(blob)));
}

/** `blob.arrayBuffer()`, with a FileReader fallback for environments that lack it (older Safari, jsdom). */
function blobBytes(blob: Blob): Promise<ArrayBuffer> {
  if (typeof blob.arrayBuffer === 'function') return blob.arrayBuffer();
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result as ArrayBuffer);
    reader.onerror = () => reject(reader.error);
    reader.readAsArrayBuffer(blob);
  });
}

/** Guesses an image's MIME type from the first bytes of its base64. */
export function mimeOfBase64(base64: string): string {
  if (base64.startsWith('iVBOR')) return 'image/png';
  if (base64.startsWith('/9j/')) return 'image/jpeg';
  if (base64.startsWith('UklGR')) return 'image/webp';
  return 'image/png';
}

/** True when an image string from the worker carries the bytes itself (base64 or a data URL), not a path. */
export function isInlineImage(image: string): boolean {
  if (image.startsWith('data:')) return true;
  return !image.startsWith('/') && !/^https?:\/\//.test(image);
}

/** A `data:` URL for an inline image string (base64 or already a data URL). */
export function inlineImageToDataUrl(image: string): string {
  if (image.startsWith('data:')) return image;
  return `data:${mimeOfBase64(image)};base64,${image}`;
}

/** Bytes and MIME type of an inline image string. */
export function inlineImageToBlob(image: string): Blob {
  let mime: string;
  let payload: string;
  if (image.startsWith('data:')) {
    const comma = image.indexOf(',');
    mime = image.slice(5, comma).replace(/;base64$/, '') || 'image/png';
    payload = image.slice(comma + 1);
  } else {
    mime = mimeOfBase64(image);
    payload = image;
  }
  return new Blob([base64ToBytes(payload) as BlobPart], { type: mime });
}
