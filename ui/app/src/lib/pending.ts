/** The job a tab is waiting for, kept in sessionStorage so that a reload picks it up again (the worker keeps
 * running it; only this page forgot it). */
import type { Operation } from '@sd-worker/sdk';
import type { Mode } from './route';

export interface PendingJob {
  mode: Mode;
  jobId: string;
  operation: Operation;
  /** The request's fields without its images, for the gallery entry. */
  request: Record<string, unknown>;
}

const KEY = 'sd-worker.pending-job';

export function readPendingJob(): PendingJob | null {
  try {
    const raw = sessionStorage.getItem(KEY);
    return raw ? (JSON.parse(raw) as PendingJob) : null;
  } catch {
    return null;
  }
}

export function writePendingJob(job: PendingJob | null): void {
  try {
    if (job) sessionStorage.setItem(KEY, JSON.stringify(job));
    else sessionStorage.removeItem(KEY);
  } catch {
    // storage unavailable: a reload simply forgets the job
  }
}
