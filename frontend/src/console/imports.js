// The import page (engine/console/imports.py).
import { installNavKeys } from './common.js';

installNavKeys();
