// Vite builds the workbench pages into frontend/dist/, which Django serves as static files
// (STATICFILES_DIRS + whitenoise). The manifest (dist/.vite/manifest.json) is read by
// annotation/workbench.py to emit the hashed <script>/<link> tags.
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/static/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    manifest: true,
    target: 'es2022',
    sourcemap: false,
    chunkSizeWarningLimit: 800, // three + GLTFLoader is one ~650 kB chunk (160 kB gzipped), cached across pages
    rollupOptions: {
      input: {
        workbench: 'src/pages/workbench.js',
        scene: 'src/pages/scene.js',
        artist: 'src/pages/artist.js',
        console: 'src/console/console.js',
        'console-projects': 'src/console/projects.js',
        'console-imports': 'src/console/imports.js',
        'console-rounds': 'src/console/rounds.js',
        'console-review': 'src/console/review.js',
        'console-replay': 'src/console/replay.js',
        'console-snapshots': 'src/console/snapshots.js',
        'console-checkpoints': 'src/console/checkpoints.js',
      },
    },
  },
  test: {
    include: ['test/**/*.test.js'],
    environment: 'node',
  },
});
