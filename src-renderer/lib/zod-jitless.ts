// The renderer takes only constants from the contract, but loading it builds its zod schemas, and
// zod's JIT probes `new Function` while doing so: a CSP violation (no 'unsafe-eval') logged on
// every start. Evaluated before anything imports the contract.
import { config } from 'zod';

config({ jitless: true });
