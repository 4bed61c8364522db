/** Asks for the worker's API key after a 401; the key is kept in this browser's localStorage. */
import { useEffect, useRef, useState } from 'react';

interface Props {
  open: boolean;
  /** True when a key was already tried and refused. */
  rejected: boolean;
  onSave: (key: string) => void;
}

export function ApiKeyDialog({ open, rejected, onSave }: Props) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [key, setKey] = useState('');
  useEffect(() => {
    const element = dialog.current;
    if (!element) return;
    if (open && !element.open) element.showModal();
    if (!open && element.open) element.close();
  }, [open]);
  return (
    <dialog ref={dialog} aria-labelledby="api-key-title" onCancel={(e) => e.preventDefault()}>
      <form
        method="dialog"
        onSubmit={(e) => {
          e.preventDefault();
          if (key.trim()) onSave(key.trim());
        }}
      >
        <h2 id="api-key-title">API key needed</h2>
        <p>This worker was started with an API key. Enter it to continue; it is stored only in this browser.</p>
        {rejected && (
          <p className="field-error" role="alert">
            That key was refused.
          </p>
        )}
        <label htmlFor="api-key">API key</label>
        <input id="api-key" type="password" autoComplete="current-password" value={key} onChange={(e) => setKey(e.target.value)} autoFocus />
        <div className="dialog-actions">
          <button type="submit" className="primary" disabled={!key.trim()}>
            Save key
          </button>
        </div>
      </form>
    </dialog>
  );
}
