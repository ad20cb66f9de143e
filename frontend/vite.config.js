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
    // three + GLTFLoader is one ~700 kB chunk (175 kB gzipped), cached across pages; Spark (splats) is
    // its own 2.6 MB chunk (0.9 MB gzipped), imported only when an item has a splat to draw.
    chunkSizeWarningLimit: 2700,
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
