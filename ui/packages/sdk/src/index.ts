/** @sd-worker/sdk: a typed client for the sd-worker job API. */
export * from './types.js';
export { ApiError, NetworkError } from './errors.js';
export { SseParser, type SseMessage } from './sse.js';
export { decodeJobEvent, isTerminal, DONE } from './events.js';
export {
  SdWorkerClient,
  type SdWorkerClientOptions,
  type ReconnectOptions,
  type FollowOptions,
  type RunOptions,
  type JobOutcome,
} from './client.js';
export {
  bytesToBase64,
  base64ToBytes,
  blobToBase64,
  inlineImageToBlob,
  inlineImageToDataUrl,
  isInlineImage,
} from './base64.js';
export { compareWithOpenApi, describeMismatches, type SchemaMismatch } from './openapi-check.js';
