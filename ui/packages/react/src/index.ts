/** @sd-worker/react: React hooks over @sd-worker/sdk. */
export { SdWorkerProvider, useSdWorkerClient } from './context.js';
export {
  useJob,
  useTextToImage,
  useImageToImage,
  useInpainting,
  type HookOptions,
  type JobControls,
  type ImageInput,
  type TextToImageParams,
  type ImageToImageParams,
  type InpaintingParams,
} from './hooks.js';
export { jobReducer, initialJobState, type JobState, type JobPhase, type JobAction } from './state.js';
