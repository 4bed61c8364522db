/** The running job: queue position, progress bar with ETA, live preview, cancel; then its images. */
import type { JobState } from '@sd-worker/react';
import { ApiError } from '@sd-worker/sdk';
import { formatEta } from '../lib/format';

export interface ShownResult {
  url: string;
  seed: number | null;
}

interface Props {
  job: JobState;
  results: ShownResult[];
  onCancel: () => void;
  /** An error not tied to a form field (those show at the field). */
  showError: boolean;
  /** The form shows an error at one of its fields. */
  fieldErrorShown: boolean;
}

const PLACEHOLDER: Record<JobState['phase'], string> = {
  idle: 'Your image will appear here.',
  submitting: '',
  queued: 'Waiting for the worker to finish the jobs ahead…',
  running: 'The preview appears after the first step.',
  succeeded: '',
  failed: '',
  cancelled: 'Cancelled before it finished; nothing was kept.',
};

export function JobPanel({ job, results, onCancel, showError, fieldErrorShown }: Props) {
  const { phase, progress, position, preview, error } = job;
  const percent = Math.round(progress?.percent ?? 0);
  const status = (() => {
    switch (phase) {
      case 'idle':
        return 'Ready.';
      case 'submitting':
        return 'Sending…';
      case 'queued':
        return position ? `Queued: position ${position}` : 'Queued';
      case 'running':
        return progress ? `Step ${progress.step} of ${progress.total} · ${percent}% · ${formatEta(progress.eta_ms)}` : 'Starting…';
      case 'succeeded':
        return `Done${job.result?.timings?.total_ms ? ` in ${(job.result.timings.total_ms / 1000).toFixed(1)} s` : ''}.`;
      case 'failed':
        return fieldErrorShown ? 'Not sent: see the highlighted field.' : 'Failed.';
      case 'cancelled':
        return 'Cancelled.';
    }
  })();
  const showProgress = phase === 'queued' || phase === 'running' || phase === 'submitting';
  const shownPreview = phase === 'running' || phase === 'queued' ? preview : null;

  return (
    <section className="job-panel" aria-labelledby="job-heading">
      <h2 id="job-heading" className="visually-hidden">
        Result
      </h2>
      <div className="status-row">
        <p className="status" role="status" aria-live="polite" data-phase={phase}>
          {status}
        </p>
        {job.busy && (
          <button type="button" className="danger" onClick={onCancel}>
            Cancel
          </button>
        )}
      </div>
      {showProgress && (
        <div className="progress" role="progressbar" aria-label="Generation progress" aria-valuemin={0} aria-valuemax={100} aria-valuenow={percent}>
          <div className="progress-fill" style={{ width: `${percent}%` }} />
        </div>
      )}
      {showError && error && phase === 'failed' && (
        <p className="error-banner" role="alert">
          {describeError(error)}
        </p>
      )}
      <div className="canvas-area">
        {shownPreview ? (
          <img className="preview" src={shownPreview} alt={`Preview at step ${progress?.step ?? 0}`} data-testid="preview" />
        ) : results.length > 0 && phase !== 'failed' ? (
          <div className={`results count-${Math.min(results.length, 4)}`}>
            {results.map((r, i) => (
              <img key={r.url} src={r.url} alt={`Result ${i + 1}${r.seed !== null ? `, seed ${r.seed}` : ''}`} data-testid="result-image" />
            ))}
          </div>
        ) : (
          <div className="placeholder" aria-hidden="true">
            {PLACEHOLDER[phase]}
          </div>
        )}
      </div>
    </section>
  );
}

export function describeError(error: Error): string {
  if (error instanceof ApiError) {
    if (error.status === 429) return `The worker's queue is full. Try again${error.retryAfter ? ` in ${error.retryAfter} s` : ' shortly'}.`;
    if (error.status === 401) return 'The worker needs an API key.';
    return error.message;
  }
  if (error.name === 'NetworkError') return `Lost contact with the worker: ${error.message}`;
  return error.message;
}
