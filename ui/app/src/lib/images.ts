/** Loading a picked/dropped/gallery image into the size the worker will use: fitted within the worker's
 * largest side and cut to multiples of 8, re-encoded as PNG so the image, the mask and the request agree. */

export interface PickedImage {
  png: Blob;
  /** Object URL of `png`, revoked by whoever replaces the image. */
  url: string;
  width: number;
  height: number;
  name: string;
}

export async function loadPickedImage(file: Blob, name: string, maxSide: number): Promise<PickedImage> {
  const bitmap = await createImageBitmap(file);
  try {
    const scale = Math.min(1, maxSide / Math.max(bitmap.width, bitmap.height));
    const width = Math.max(8, Math.floor((bitmap.width * scale) / 8) * 8);
    const height = Math.max(8, Math.floor((bitmap.height * scale) / 8) * 8);
    const canvas = document.createElement('canvas');
    canvas.width = width;
    canvas.height = height;
    const context = canvas.getContext('2d');
    if (!context) throw new Error('this browser cannot draw images (no 2D canvas)');
    context.drawImage(bitmap, 0, 0, width, height);
    const png = await canvasToPng(canvas);
    return { png, url: URL.createObjectURL(png), width, height, name };
  } finally {
    bitmap.close();
  }
}

export function canvasToPng(canvas: HTMLCanvasElement): Promise<Blob> {
  return new Promise((resolve, reject) => {
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error('could not encode the image'))), 'image/png');
  });
}
