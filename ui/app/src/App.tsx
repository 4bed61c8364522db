/** The app shell: worker info and API key, the three modes, the gallery, and the state they share (form
 * parameters, the img2img/inpaint pictures, gallery items). */
import { useCallback, useEffect, useRef, useState } from 'react';
import { ApiError, type WorkerInfo } from '@sd-worker/sdk';
import { ApiKeyDialog } from './components/ApiKeyDialog';
import { Gallery } from './components/Gallery';
import { Studio } from './components/Studio';
import { client, saveApiKey, storedApiKey } from './lib/api';
import { deleteGalleryItem, listGallery, type GalleryItem } from './lib/gallery-db';
import { loadPickedImage, type PickedImage } from './lib/images';
import { initialParams, type FormParams } from './lib/params';
import { MODE_PATHS, useMode, type Mode } from './lib/route';
import { modelDisplayName } from './lib/model-name';

const TABS: { mode: Mode; label: string }[] = [
  { mode: 'txt2img', label: 'Text to image' },
  { mode: 'img2img', label: 'Image to image' },
  { mode: 'inpaint', label: 'Inpaint' },
];

type Connection = { state: 'loading' } | { state: 'ready'; info: WorkerInfo } | { state: 'error'; message: string };

export function App() {
  const [mode, navigate] = useMode();
  const [connection, setConnection] = useState<Connection>({ state: 'loading' });
  const [params, setParams] = useState<FormParams>(() => initialParams(null));
  const [inputs, setInputs] = useState<Record<'img2img' | 'inpaint', PickedImage | null>>({ img2img: null, inpaint: null });
  const [gallery, setGallery] = useState<GalleryItem[]>([]);
  const [keyPrompt, setKeyPrompt] = useState<{ open: boolean; rejected: boolean }>({ open: false, rejected: false });
  const info = connection.state === 'ready' ? connection.info : null;

  const askForKey = useCallback(() => setKeyPrompt({ open: true, rejected: storedApiKey() !== null }), []);

  const retryTimer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const connect = useCallback(async () => {
    clearTimeout(retryTimer.current);
    setConnection({ state: 'loading' });
    try {
      const workerInfo = await client.info();
      setConnection({ state: 'ready', info: workerInfo });
      setParams((current) => ({ ...initialParams(workerInfo), prompt: current.prompt, negative_prompt: current.negative_prompt }));
    } catch (error) {
      if (error instanceof ApiError && error.isUnauthorized) askForKey();
      setConnection({ state: 'error', message: error instanceof Error ? error.message : String(error) });
      // 503: the worker is up but still loading its model; it will be ready shortly.
      if (error instanceof ApiError && error.status === 503) retryTimer.current = setTimeout(() => void connect(), 2000);
    }
  }, [askForKey]);
  useEffect(() => () => clearTimeout(retryTimer.current), []);

  useEffect(() => {
    void connect();
    listGallery().then(setGallery, () => setGallery([]));
  }, [connect]);

  const maxSide = info?.limits?.max_side ?? 1024;
  const setInput = (target: 'img2img' | 'inpaint', image: PickedImage | null) =>
    setInputs((previous) => {
      const old = previous[target];
      if (old && old !== image && old !== previous[target === 'img2img' ? 'inpaint' : 'img2img']) URL.revokeObjectURL(old.url);
      return { ...previous, [target]: image };
    });

  const pick = async (target: 'img2img' | 'inpaint', file: Blob, name: string) => {
    const image = await loadPickedImage(file, name, maxSide);
    setInput(target, image);
    setParams((current) => ({ ...current, width: String(image.width), height: String(image.height) }));
  };

  const reuse = (item: GalleryItem) => {
    const p = item.params;
    const text = (key: string, fallback: string) => (p[key] === undefined || p[key] === null ? fallback : String(p[key]));
    setParams((current) => ({
      ...current,
      prompt: text('prompt', ''),
      negative_prompt: text('negative_prompt', ''),
      sampler: text('sampler', current.sampler),
      steps: text('steps', current.steps),
      guidance_scale: text('guidance_scale', current.guidance_scale),
      width: text('width', current.width),
      height: text('height', current.height),
      batch: text('batch', '1'),
      ...(item.operation === 'image_inpaint'
        ? { inpaint_strength: text('strength', current.inpaint_strength) }
        : { strength: text('strength', current.strength) }),
      seed: item.seed === null ? current.seed : String(item.seed),
      seedLocked: item.seed !== null,
    }));
    navigate(item.operation === 'image_transform' ? 'img2img' : item.operation === 'image_inpaint' ? 'inpaint' : 'txt2img');
    window.scrollTo({ top: 0, behavior: 'smooth' });
  };

  const sendTo = async (item: GalleryItem, target: 'img2img' | 'inpaint') => {
    await pick(target, item.png, `gallery-${item.id}.png`);
    setParams((current) => ({ ...current, prompt: current.prompt || String(item.params.prompt ?? '') }));
    navigate(target);
    window.scrollTo({ top: 0, behavior: 'smooth' });
  };

  const remove = async (item: GalleryItem) => {
    await deleteGalleryItem(item.id);
    setGallery((items) => items.filter((i) => i.id !== item.id));
  };

  return (
    <>
      <a className="skip-link" href="#main">
        Skip to the form
      </a>
      <header className="topbar">
        <div className="brand">
          <strong>sd-worker</strong>
          <span className="model" data-testid="model-name">
            {connection.state === 'ready'
              ? `${modelDisplayName(connection.info.model)}${connection.info.device ? ` · ${connection.info.device}` : ''}`
              : connection.state === 'loading'
                ? 'connecting…'
                : 'not connected'}
          </span>
        </div>
        <nav aria-label="Mode">
          <ul className="tabs">
            {TABS.map((tab) => (
              <li key={tab.mode}>
                <a
                  href={MODE_PATHS[tab.mode]}
                  aria-current={mode === tab.mode ? 'page' : undefined}
                  onClick={(e) => {
                    if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
                    e.preventDefault();
                    navigate(tab.mode);
                  }}
                >
                  {tab.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
      </header>
      <main id="main">
        <h1 className="visually-hidden">{TABS.find((t) => t.mode === mode)?.label}</h1>
        {connection.state === 'error' && !keyPrompt.open && (
          <div className="error-banner" role="alert">
            Cannot reach the worker: {connection.message}{' '}
            <button type="button" onClick={() => void connect()}>
              Retry
            </button>
          </div>
        )}
        <Studio
          mode={mode}
          info={info}
          params={params}
          onParamsChange={setParams}
          input={mode === 'txt2img' ? null : inputs[mode]}
          onPickFile={(file) => mode !== 'txt2img' && void pick(mode, file, file.name)}
          onClearInput={() => mode !== 'txt2img' && setInput(mode, null)}
          onSaved={(items) => setGallery((current) => [...items.reverse(), ...current])}
          onUnauthorized={askForKey}
        />
        <Gallery items={gallery} onReuse={reuse} onSendTo={(item, target) => void sendTo(item, target)} onDelete={(item) => void remove(item)} />
      </main>
      <ApiKeyDialog
        open={keyPrompt.open}
        rejected={keyPrompt.rejected}
        onSave={(key) => {
          saveApiKey(key);
          setKeyPrompt({ open: false, rejected: false });
          void connect();
        }}
      />
    </>
  );
}
