/** Errors the SDK throws: one for answers the worker gave (`ApiError`), one for answers it could not give. */
import type { ErrorDetail } from './types.js';

/** The worker answered with a 4xx/5xx, or a job failed; carries the worker's `{code, message, field}`. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  /** The request field at fault, for validation errors. */
  readonly field: string | undefined;
  /** Seconds from a `Retry-After` header (a full queue answers 429 with one). */
  readonly retryAfter: number | undefined;

  constructor(status: number, body: ErrorDetail, retryAfter?: number) {
    super(body.message);
    this.name = 'ApiError';
    this.status = status;
    this.code = body.code;
    this.field = body.field ?? undefined;
    this.retryAfter = retryAfter;
  }

  /** True when the worker wants an API key (or a different one). */
  get isUnauthorized(): boolean {
    return this.status === 401;
  }
}

/** The worker could not be reached, or its answer was not what the API promises. */
export class NetworkError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NetworkError';
  }
}

/** Reads an error response into an `ApiError`, whatever shape its body has. */
export async function apiErrorFromResponse(response: Response): Promise<ApiError> {
  const retryAfterHeader = response.headers.get('retry-after');
  const retryAfter = retryAfterHeader !== null && /^\d+$/.test(retryAfterHeader.trim())
    ? Number(retryAfterHeader.trim())
    : undefined;
  let text = '';
  try {
    text = await response.text();
  } catch {
    // body unreadable: fall back to the status line below
  }
  const fallback: ErrorDetail = {
    code: `http_${response.status}`,
    message: text.trim() || response.statusText || `HTTP ${response.status}`,
  };
  try {
    const parsed: unknown = JSON.parse(text);
    if (isErrorEnvelope(parsed)) return new ApiError(response.status, parsed.error, retryAfter);
  } catch {
    // not JSON: fall back
  }
  return new ApiError(response.status, fallback, retryAfter);
}

function isErrorEnvelope(value: unknown): value is { error: ErrorDetail } {
  if (typeof value !== 'object' || value === null) return false;
  const error = (value as { error?: unknown }).error;
  return typeof error === 'object' && error !== null &&
    typeof (error as ErrorDetail).code === 'string' && typeof (error as ErrorDetail).message === 'string';
}
