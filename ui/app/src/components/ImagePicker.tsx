/** Choose the starting picture: file picker, drag and drop, or paste; shows it with a remove button. */
import { useRef, useState } from 'react';

interface Props {
  label: string;
  /** The gallery button that sends a picture here, named in the hint. */
  galleryAction: string;
  hasImage: boolean;
  preview: string | null;
  caption: string | null;
  error: string | undefined;
  onFile: (file: File) => void;
  onClear: () => void;
}

export function ImagePicker({ label, galleryAction, hasImage, preview, caption, error, onFile, onClear }: Props) {
  const input = useRef<HTMLInputElement>(null);
  const [dragging, setDragging] = useState(false);
  const take = (files: FileList | null | undefined) => {
    const file = files && [...files].find((f) => f.type.startsWith('image/'));
    if (file) onFile(file);
  };
  return (
    <div className={`field${error ? ' has-error' : ''}`}>
      <span className="label" id="image-label">
        {label}
      </span>
      <div
        className={`dropzone${dragging ? ' dragging' : ''}`}
        onDragOver={(e) => {
          e.preventDefault();
          setDragging(true);
        }}
        onDragLeave={() => setDragging(false)}
        onDrop={(e) => {
          e.preventDefault();
          setDragging(false);
          take(e.dataTransfer.files);
        }}
        onPaste={(e) => take(e.clipboardData.files)}
        aria-labelledby="image-label"
        aria-describedby={error ? 'image-error' : undefined}
        role="group"
      >
        {hasImage ? (
          <div className="picked">
            {preview && <img src={preview} alt="Starting picture" />}
            <div className="picked-actions">
              <span>{caption}</span>
              <button type="button" onClick={() => input.current?.click()}>
                Replace…
              </button>
              <button type="button" onClick={onClear}>
                Remove
              </button>
            </div>
          </div>
        ) : (
          <div className="empty-drop">
            <p>Drop a picture here, paste one, or</p>
            <button type="button" id="field-image" onClick={() => input.current?.click()}>
              Choose a file…
            </button>
            <p className="hint">Or press “{galleryAction}” under a picture in the gallery below.</p>
          </div>
        )}
        <input
          ref={input}
          type="file"
          accept="image/png,image/jpeg,image/webp,image/*"
          hidden
          data-testid="image-file"
          onChange={(e) => {
            take(e.target.files);
            e.target.value = '';
          }}
        />
      </div>
      {error && (
        <small id="image-error" className="field-error" role="alert">
          {error}
        </small>
      )}
    </div>
  );
}
