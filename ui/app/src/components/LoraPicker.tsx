/** The worker's LoRAs (`GET /v1/loras`) as buttons under the prompt; a click adds `<lora:NAME:1>` to it.
 * Hidden when the worker has none (no `--lora-dir`) or cannot list them. */
import { useEffect, useState } from 'react';
import type { LoraInfo, WorkerInfo } from '@sd-worker/sdk';
import { client } from '../lib/api';

interface Props {
  /** Refetched whenever the worker info changes (connect, reconnect after an API key). */
  info: WorkerInfo | null;
  onPick: (name: string) => void;
}

export function LoraPicker({ info, onPick }: Props) {
  const [loras, setLoras] = useState<LoraInfo[]>([]);
  useEffect(() => {
    if (!info) return undefined;
    const controller = new AbortController();
    client.listLoras(controller.signal).then(setLoras, () => {
      // An older worker without the route, or no key yet: the picker stays hidden.
      if (!controller.signal.aborted) setLoras([]);
    });
    return () => controller.abort();
  }, [info]);

  if (loras.length === 0) return null;
  return (
    <div className="lora-picker" role="group" aria-labelledby="lora-picker-label" data-testid="lora-picker">
      <span className="label" id="lora-picker-label">
        LoRAs
      </span>
      <ul>
        {loras.map((lora) => (
          <li key={lora.name}>
            <button type="button" className="chip" title={`Add <lora:${lora.name}:1> to the prompt`} onClick={() => onPick(lora.name)}>
              {lora.name}
            </button>
          </li>
        ))}
      </ul>
    </div>
  );
}
