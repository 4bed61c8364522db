/** What the header calls the model: the name a person picked the model by (a folder's or file's name, or a hub
 * id), never the server's filesystem path. */
const WEIGHT_EXTENSIONS = /\.(safetensors|ckpt|pt|bin)$/i;

export function modelDisplayName(model: string): string {
  const trimmed = model.replace(/[\\/]+$/, '');
  // A hub id (org/name) is a name already; a path is recognised by a leading /, ./, ~ or a drive letter.
  const isPath = /^([/~.]|[A-Za-z]:[\\/])/.test(trimmed) || trimmed.split(/[\\/]/).length > 2;
  const name = isPath ? trimmed.split(/[\\/]/).pop() ?? trimmed : trimmed;
  return name.replace(WEIGHT_EXTENSIONS, '');
}
