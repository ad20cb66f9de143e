import '../workbench.css';
import { Workbench } from '../workbench.js';

const root = document.getElementById('workbench');
const bench = new Workbench(root, { slug: root.dataset.project, apiBase: root.dataset.api || '/api/v1/' });
bench.start();
