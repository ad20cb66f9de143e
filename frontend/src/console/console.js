// Every console page: the navigation's keys (shown on screen as <kbd>), and nothing else.
// Pages with more to do import this module and add their own (projects.js, imports.js, ...).
import { installNavKeys } from './common.js';

installNavKeys();
