import { memory } from '../src/index.js';
import { testDestination } from './conformance/destination.js';

testDestination('memory', async () => ({ destination: memory(), cleanup: async () => {} }), { lease: true });
