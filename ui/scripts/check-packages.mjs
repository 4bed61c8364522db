// Checks that every publishable package of the UI workspace would publish what a user can install: it builds
// through its own `prepublishOnly`, its entry points (main, types, exports) are built files that the tarball
// holds (never raw .ts), and it says where it comes from and that it is public. Run by ui/run-tests.sh.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const root = JSON.parse(readFileSync('package.json', 'utf8'));
let failures = 0;
const fail = (pkg, message) => {
  failures++;
  console.error(`${pkg}: ${message}`);
};

for (const dir of root.workspaces) {
  const manifest = JSON.parse(readFileSync(`${dir}/package.json`, 'utf8'));
  if (manifest.private) continue;
  const name = manifest.name;
  if (!manifest.scripts?.prepublishOnly) fail(name, 'no prepublishOnly script: publishing would skip the build');
  if (manifest.publishConfig?.access !== 'public') fail(name, 'publishConfig.access is not "public" (scoped packages default to restricted)');
  if (!manifest.repository?.url) fail(name, 'no repository');
  if (!manifest.types) fail(name, 'no types');
  if (manifest.scripts?.prepublishOnly) execFileSync('npm', ['run', 'prepublishOnly', '-w', name], { stdio: 'ignore' });
  const [packed] = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts', '-w', name], { encoding: 'utf8' }));
  const files = new Set(packed.files.map((f) => f.path));
  const entries = [manifest.main, manifest.types, ...Object.values(manifest.exports ?? {}).flatMap((e) => (typeof e === 'string' ? [e] : Object.values(e)))];
  for (const entry of entries.filter(Boolean)) {
    const path = entry.replace(/^\.\//, '');
    if (path.endsWith('.ts') && !path.endsWith('.d.ts')) fail(name, `entry point ${entry} is raw TypeScript`);
    if (!files.has(path)) fail(name, `entry point ${entry} is not in the published tarball`);
  }
  console.log(`${name}: ${packed.files.length} files, entry points ${entries.length ? 'built and packed' : 'missing'}`);
}
if (failures > 0) {
  console.error(`${failures} packaging problem(s)`);
  process.exit(1);
}
