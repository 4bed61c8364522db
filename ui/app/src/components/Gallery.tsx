/** Every finished image, kept in IndexedDB: its parameters, re-use, send to img2img/inpaint, download
 * (the worker's PNG byte for byte, with the parameters the worker wrote into it), delete. */
import { useEffect, useMemo, useState } from 'react';
import type { GalleryItem } from '../lib/gallery-db';
import { formatDate } from '../lib/format';
import { samplerLabel } from '../lib/samplers';

interface Props {
  items: GalleryItem[];
  onReuse: (item: GalleryItem) => void;
  onSendTo: (item: GalleryItem, mode: 'img2img' | 'inpaint') => void;
  onDelete: (item: GalleryItem) => void;
}

const OPERATION_LABEL = { image_generation: 'Text to image', image_transform: 'Image to image', image_inpaint: 'Inpaint' } as const;

export function Gallery({ items, onReuse, onSendTo, onDelete }: Props) {
  const urls = useMemo(() => new Map(items.map((item) => [item.id, URL.createObjectURL(item.png)])), [items]);
  useEffect(() => () => urls.forEach((url) => URL.revokeObjectURL(url)), [urls]);

  return (
    <section className="gallery" aria-labelledby="gallery-heading">
      <h2 id="gallery-heading">
        Gallery <span className="count">{items.length > 0 ? `(${items.length})` : ''}</span>
      </h2>
      {items.length === 0 ? (
        <div className="gallery-empty" data-testid="gallery-empty">
          <p>No images yet.</p>
          <p className="hint">Everything you generate is kept here, in this browser, with the settings that made it.</p>
        </div>
      ) : (
        <ul className="gallery-grid">
          {items.map((item) => (
            <GalleryCard key={item.id} item={item} url={urls.get(item.id) ?? ''} onReuse={onReuse} onSendTo={onSendTo} onDelete={onDelete} />
          ))}
        </ul>
      )}
    </section>
  );
}

function GalleryCard({ item, url, onReuse, onSendTo, onDelete }: { item: GalleryItem; url: string } & Omit<Props, 'items'>) {
  const [confirming, setConfirming] = useState(false);
  const p = item.params;
  const download = () => {
    // The stored blob is the worker's own PNG, metadata included: saving anything else would disagree with it.
    const link = document.createElement('a');
    link.href = URL.createObjectURL(item.png);
    link.download = `sd-${item.seed ?? item.id}.png`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  };
  const prompt = String(p.prompt ?? '');
  return (
    <li className="gallery-card" data-testid="gallery-item">
      <img src={url} alt={prompt || 'Generated image'} loading="lazy" width={item.width} height={item.height} />
      <div className="card-body">
        <p className="card-prompt" title={prompt}>
          {prompt}
        </p>
        <p className="card-meta">
          {OPERATION_LABEL[item.operation]} · {item.width}×{item.height} · seed {item.seed ?? '?'}
          <br />
          {samplerLabel(String(p.sampler ?? ''))} · {String(p.steps ?? '?')} steps · CFG {String(p.guidance_scale ?? '?')}
          {p.strength !== undefined ? ` · strength ${String(p.strength)}` : ''}
          <br />
          <time dateTime={new Date(item.createdAt).toISOString()}>{formatDate(item.createdAt)}</time>
        </p>
        <div className="card-actions">
          <button type="button" onClick={() => onReuse(item)} aria-label={`Re-use the settings of “${prompt}”`}>
            Re-use
          </button>
          <button type="button" onClick={() => onSendTo(item, 'img2img')} aria-label={`Send “${prompt}” to image to image`}>
            Img2img
          </button>
          <button type="button" onClick={() => onSendTo(item, 'inpaint')} aria-label={`Send “${prompt}” to inpaint`}>
            Inpaint
          </button>
          <button type="button" onClick={download} aria-label={`Download “${prompt}” as PNG`}>
            Download
          </button>
          {confirming ? (
            <button type="button" className="danger" onClick={() => onDelete(item)} onBlur={() => setConfirming(false)} autoFocus>
              Really delete?
            </button>
          ) : (
            <button type="button" onClick={() => setConfirming(true)} aria-label={`Delete “${prompt}”`}>
              Delete
            </button>
          )}
        </div>
      </div>
    </li>
  );
}
