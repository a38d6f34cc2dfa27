#!/usr/bin/env node
// The `aha` command. TypeScript sources run through tsx's loader, so plain Node works after `npm install`.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src-main/cli/aha.ts');
process.exitCode = await main(process.argv.slice(2));
