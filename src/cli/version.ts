/** The package's version, from its package.json. */
import { readFileSync } from 'fs';
import { join } from 'path';
import { packageRoot } from '../binding.js';

export function version(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}
