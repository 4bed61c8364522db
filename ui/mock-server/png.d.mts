// Types of png.mjs for the TypeScript tests that use it.
export function encodePng(width: number, height: number, rgba: Uint8Array, text?: Record<string, string>): Buffer;
export function decodePng(buffer: Buffer): { width: number; height: number; rgba: Uint8Array; text: Record<string, string> } | null;
