/**
 * The inpainting mask editor: paint over the picture where it should be repainted. Brush and eraser with a
 * size, undo/redo, clear, invert, overlay opacity; pointer events so mouse, pen (with pressure) and touch all
 * draw. The mask lives in a canvas at the picture's own size; `exportMask` gives the PNG the worker wants
 * (white = repaint, black = keep).
 */
import { useCallback, useEffect, useImperativeHandle, useRef, useState, type Ref } from 'react';
import { canvasToPng } from '../lib/images';

export interface MaskEditorHandle {
  /** PNG mask, white where painted; null when nothing is painted. */
  exportMask: () => Promise<Blob | null>;
}

interface Props {
  imageUrl: string;
  width: number;
  height: number;
  error: string | undefined;
  ref?: Ref<MaskEditorHandle>;
}

const MASK_RGB = [255, 56, 140] as const;
const HISTORY_LIMIT = 40;

export function MaskEditor({ imageUrl, width, height, error, ref }: Props) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const [tool, setTool] = useState<'brush' | 'eraser'>('brush');
  const [size, setSize] = useState(() => Math.max(4, Math.round(Math.max(width, height) / 10)));
  const [opacity, setOpacity] = useState(0.6);
  const undo = useRef<ImageData[]>([]);
  const redo = useRef<ImageData[]>([]);
  const [historySize, setHistorySize] = useState({ undo: 0, redo: 0 });
  const stroke = useRef<{ pointerId: number; last: { x: number; y: number } } | null>(null);

  const context = () => canvas.current?.getContext('2d', { willReadFrequently: true }) ?? null;
  const syncHistory = () => setHistorySize({ undo: undo.current.length, redo: redo.current.length });

  // A new picture starts a new mask.
  useEffect(() => {
    const ctx = context();
    ctx?.clearRect(0, 0, width, height);
    undo.current = [];
    redo.current = [];
    syncHistory();
    setSize(Math.max(4, Math.round(Math.max(width, height) / 10)));
  }, [imageUrl, width, height]);

  const snapshot = () => {
    const ctx = context();
    if (!ctx) return;
    undo.current.push(ctx.getImageData(0, 0, width, height));
    if (undo.current.length > HISTORY_LIMIT) undo.current.shift();
    redo.current = [];
    syncHistory();
  };

  const restore = (from: ImageData[], to: ImageData[]) => {
    const ctx = context();
    const previous = from.pop();
    if (!ctx || !previous) return;
    to.push(ctx.getImageData(0, 0, width, height));
    ctx.putImageData(previous, 0, 0);
    syncHistory();
  };

  const toCanvasPoint = (event: { clientX: number; clientY: number }) => {
    const rect = canvas.current!.getBoundingClientRect();
    return { x: ((event.clientX - rect.left) * width) / rect.width, y: ((event.clientY - rect.top) * height) / rect.height };
  };

  const paint = (from: { x: number; y: number }, to: { x: number; y: number }, pointer: PointerEvent) => {
    const ctx = context();
    if (!ctx) return;
    // Pens report real pressure; mice and fingers report 0.5 or 0 while pressed, so they draw at full size.
    const pressure = pointer.pointerType === 'pen' && pointer.pressure > 0 ? 0.25 + 0.75 * pointer.pressure : 1;
    ctx.globalCompositeOperation = tool === 'eraser' ? 'destination-out' : 'source-over';
    ctx.strokeStyle = `rgb(${MASK_RGB.join(',')})`;
    ctx.lineWidth = size * pressure;
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    ctx.beginPath();
    ctx.moveTo(from.x, from.y);
    ctx.lineTo(to.x + 0.01, to.y); // a zero-length line draws nothing; a dot needs a hair of length
    ctx.stroke();
  };

  const onPointerDown = (event: React.PointerEvent<HTMLCanvasElement>) => {
    if (event.pointerType === 'mouse' && event.button !== 0) return;
    event.preventDefault();
    try {
      event.currentTarget.setPointerCapture(event.pointerId); // keep the stroke when it leaves the canvas
    } catch {
      // a pointer the browser no longer tracks: paint without capture
    }
    snapshot();
    const point = toCanvasPoint(event);
    stroke.current = { pointerId: event.pointerId, last: point };
    paint(point, point, event.nativeEvent);
  };

  const onPointerMove = (event: React.PointerEvent<HTMLCanvasElement>) => {
    const current = stroke.current;
    if (!current || current.pointerId !== event.pointerId) return;
    const native = event.nativeEvent;
    const samples = typeof native.getCoalescedEvents === 'function' ? native.getCoalescedEvents() : [];
    for (const sample of samples.length > 0 ? samples : [native]) {
      const point = toCanvasPoint(sample);
      paint(current.last, point, sample);
      current.last = point;
    }
  };

  const endStroke = (event: React.PointerEvent<HTMLCanvasElement>) => {
    if (stroke.current?.pointerId === event.pointerId) stroke.current = null;
  };

  const clear = () => {
    snapshot();
    context()?.clearRect(0, 0, width, height);
  };

  const invert = () => {
    const ctx = context();
    if (!ctx) return;
    snapshot();
    const data = ctx.getImageData(0, 0, width, height);
    for (let i = 0; i < data.data.length; i += 4) {
      data.data[i] = MASK_RGB[0];
      data.data[i + 1] = MASK_RGB[1];
      data.data[i + 2] = MASK_RGB[2];
      data.data[i + 3] = 255 - data.data[i + 3]!;
    }
    ctx.putImageData(data, 0, 0);
  };

  const exportMask = useCallback(async (): Promise<Blob | null> => {
    const ctx = context();
    if (!ctx) return null;
    const painted = ctx.getImageData(0, 0, width, height);
    const out = new ImageData(width, height);
    let any = false;
    for (let i = 0; i < painted.data.length; i += 4) {
      const value = painted.data[i + 3]! >= 128 ? 255 : 0;
      any ||= value === 255;
      out.data[i] = value;
      out.data[i + 1] = value;
      out.data[i + 2] = value;
      out.data[i + 3] = 255;
    }
    if (!any) return null;
    const scratch = document.createElement('canvas');
    scratch.width = width;
    scratch.height = height;
    scratch.getContext('2d')!.putImageData(out, 0, 0);
    return canvasToPng(scratch);
  }, [width, height]);

  useImperativeHandle(ref, () => ({ exportMask }), [exportMask]);

  const onKeyDown = (event: React.KeyboardEvent) => {
    const mod = event.ctrlKey || event.metaKey;
    if (mod && event.key.toLowerCase() === 'z') {
      event.preventDefault();
      if (event.shiftKey) restore(redo.current, undo.current);
      else restore(undo.current, redo.current);
    } else if (mod && event.key.toLowerCase() === 'y') {
      event.preventDefault();
      restore(redo.current, undo.current);
    } else if (!mod && event.key === '[') {
      setSize((s) => Math.max(1, Math.round(s * 0.8)));
    } else if (!mod && event.key === ']') {
      setSize((s) => Math.min(512, Math.round(s * 1.25) + 1));
    } else if (!mod && event.key.toLowerCase() === 'b') {
      setTool('brush');
    } else if (!mod && event.key.toLowerCase() === 'e') {
      setTool('eraser');
    }
  };

  return (
    <div className={`field mask-editor${error ? ' has-error' : ''}`} onKeyDown={onKeyDown}>
      <span className="label" id="mask-label">
        Mask: paint what should change
      </span>
      <div className="mask-toolbar" role="toolbar" aria-label="Mask tools" aria-controls="field-mask">
        <div className="segmented" role="radiogroup" aria-label="Tool">
          <button type="button" role="radio" aria-checked={tool === 'brush'} onClick={() => setTool('brush')} title="Brush (B)">
            Brush
          </button>
          <button type="button" role="radio" aria-checked={tool === 'eraser'} onClick={() => setTool('eraser')} title="Eraser (E)">
            Eraser
          </button>
        </div>
        <label className="inline">
          Size
          <input type="range" min={1} max={Math.max(64, Math.round(Math.max(width, height) / 2))} value={size} onChange={(e) => setSize(Number(e.target.value))} aria-label="Brush size" />
        </label>
        <label className="inline">
          Overlay
          <input type="range" min={0.1} max={1} step={0.05} value={opacity} onChange={(e) => setOpacity(Number(e.target.value))} aria-label="Mask overlay opacity" />
        </label>
        <button type="button" onClick={() => restore(undo.current, redo.current)} disabled={historySize.undo === 0} title="Undo (Ctrl+Z)">
          Undo
        </button>
        <button type="button" onClick={() => restore(redo.current, undo.current)} disabled={historySize.redo === 0} title="Redo (Ctrl+Shift+Z)">
          Redo
        </button>
        <button type="button" onClick={invert}>
          Invert
        </button>
        <button type="button" onClick={clear}>
          Clear
        </button>
      </div>
      <div className="mask-stage" style={{ aspectRatio: `${width} / ${height}` }}>
        <img src={imageUrl} alt="" draggable={false} />
        <canvas
          id="field-mask"
          ref={canvas}
          width={width}
          height={height}
          style={{ opacity }}
          tabIndex={0}
          aria-labelledby="mask-label"
          aria-describedby={error ? 'mask-error' : 'mask-help'}
          data-testid="mask-canvas"
          onPointerDown={onPointerDown}
          onPointerMove={onPointerMove}
          onPointerUp={endStroke}
          onPointerCancel={endStroke}
          onLostPointerCapture={endStroke}
        />
      </div>
      <small id="mask-help" className="hint">
        Mouse, pen or finger. Keys: B brush, E eraser, [ ] size, Ctrl+Z undo, Ctrl+Shift+Z redo.
      </small>
      {error && (
        <small id="mask-error" className="field-error" role="alert">
          {error}
        </small>
      )}
    </div>
  );
}
