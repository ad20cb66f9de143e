// The candidate viewer: ONE WebGLRenderer drawing several viewports with the scissor test
// (three.js manual, "multiple scenes"; CVAT canvas3d), a camera shared by the two comparison
// views so that turning one turns both, and a layout view over the photo.
//
// Facade: setup(stageEl) -> viewer; viewer.load(id, glbArrayBuffer); viewer.show([leftId, rightId]);
// viewer.clear() when the item changes (disposes every geometry, material and texture of the item);
// viewer.destroy(). The viewer never calls the server: bytes come in, DOM events go out:
//   'viewer:rendered'      {ids}            first frame with every shown candidate drawn
//   'viewer:layout-change' {layout, final}  the layout stage's object moved (final on mouse-up)
//   'viewer:error'         {message}
import * as THREE from 'three';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';
import { TransformControls } from 'three/addons/controls/TransformControls.js';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { projectionFromK } from './projection.js';

export const MODES = Object.freeze(['colour', 'shaded', 'wireframe', 'normals']);
const BG = new THREE.Color(0x20242c);

export function setup(stage, options = {}) {
  return new Viewer(stage, options);
}

class Viewer {
  constructor(stage, { pixelRatio = Math.min(2, window.devicePixelRatio || 1) } = {}) {
    this.stage = stage;
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'viewer-canvas';
    stage.prepend(this.canvas);
    this.renderer = new THREE.WebGLRenderer({ canvas: this.canvas, antialias: true, powerPreference: 'low-power' });
    this.renderer.setPixelRatio(pixelRatio);
    this.renderer.setScissorTest(true);
    this.renderer.outputColorSpace = THREE.SRGBColorSpace;

    this.scene = new THREE.Scene();
    this.scene.add(new THREE.HemisphereLight(0xf2f4ff, 0x40382e, 1.6));
    this.camera = new THREE.PerspectiveCamera(35, 1, 0.01, 100);
    const key = new THREE.DirectionalLight(0xffffff, 2.2);
    key.position.set(1.5, 2, 3); // follows the camera: the lit side is always the visible side
    this.camera.add(key);
    this.scene.add(this.camera);

    this.materials = {
      shaded: new THREE.MeshStandardMaterial({ color: 0xc4c8d0, roughness: 0.75, metalness: 0 }),
      colour: new THREE.MeshStandardMaterial({ vertexColors: true, roughness: 0.8, metalness: 0 }),
      wireframe: new THREE.MeshBasicMaterial({ color: 0x9fe0ff, wireframe: true }),
      normals: new THREE.MeshNormalMaterial(),
    };
    this.mode = 'colour';
    this.loader = new GLTFLoader(); // KHR_mesh_quantization is built in
    this.items = new Map(); // id -> {root, meshes, originals, geometry stats, points, faces}
    this.loading = new Map(); // id -> parse in flight
    this.generation = 0; // bumped by clear(): parses of a previous item are dropped
    this.shown = [];
    this.views = [...stage.querySelectorAll('[data-view]')].map((el) => ({ el, side: el.dataset.view }));

    this.controls = new OrbitControls(this.camera, stage.querySelector('[data-orbit]') ?? stage);
    this.controls.enableDamping = false;
    this.controls.autoRotateSpeed = 4;
    this.controls.addEventListener('change', () => this.requestRender());

    this.layout = null; // {scene, camera, object, transform, el, width, height, background}
    this.pending = false;
    this.announced = '';
    this.destroyed = false;
    this._loop = this._loop.bind(this);
    this.resizeObserver = new ResizeObserver(() => this.requestRender());
    this.resizeObserver.observe(stage);
  }

  /**
   * Compile the shader programs the candidates will need while their bytes are still downloading
   * (software WebGL takes a few hundred ms per program). Call it once the first request is out. The dummy matches the compact GLB's
   * attributes: the program cache key depends on them (RGBA colours -> vertexAlphas).
   */
  warmUp() {
    const g = new THREE.BufferGeometry();
    g.setAttribute('position', new THREE.BufferAttribute(new Float32Array([0, 0, 0, 1, 0, 0, 0, 1, 0]), 3));
    g.setAttribute('normal', new THREE.BufferAttribute(new Float32Array([0, 0, 1, 0, 0, 1, 0, 0, 1]), 3));
    g.setAttribute('color', new THREE.BufferAttribute(new Uint8Array(12).fill(255), 4, true));
    const meshes = ['colour', 'shaded'].map((m) => new THREE.Mesh(g, this.materials[m]));
    meshes.forEach((m) => this.scene.add(m));
    try { this.renderer.compile(this.scene, this.camera); } catch { /* a warm-up only */ }
    meshes.forEach((m) => m.removeFromParent());
    g.dispose();
  }

  // ---- candidates ----
  /** Parse one candidate's GLB (full or compact) and keep it until clear(). Returns its stats. */
  load(id, buffer) {
    if (this.items.has(id)) return Promise.resolve(this.items.get(id).stats);
    if (!this.loading.has(id)) {
      const generation = this.generation;
      const p = this._parse(id, buffer, generation).finally(() => { if (this.loading.get(id) === p) this.loading.delete(id); });
      this.loading.set(id, p);
    }
    return this.loading.get(id);
  }

  async _parse(id, buffer, generation) {
    const gltf = await this.loader.parseAsync(buffer, '');
    if (this.destroyed || generation !== this.generation) { // the item changed meanwhile
      gltf.scene.traverse((o) => { if (o.isMesh) { o.geometry.dispose(); o.material.dispose(); } });
      return null;
    }
    const root = new THREE.Group();
    root.add(gltf.scene);
    root.updateMatrixWorld(true);
    const meshes = []; const originals = [];
    const pts = []; const faces = [];
    let vertices = 0; let triangles = 0; let hasColour = false;
    const v = new THREE.Vector3();
    gltf.scene.traverse((obj) => {
      if (!obj.isMesh) return;
      meshes.push(obj);
      originals.push(obj.material);
      const g = obj.geometry;
      const pos = g.getAttribute('position');
      hasColour ||= g.hasAttribute('color');
      if (!g.hasAttribute('normal')) g.computeVertexNormals();
      const base = pts.length / 3;
      for (let i = 0; i < pos.count; i++) { // dequantised by getX/Y/Z and the node transform
        v.fromBufferAttribute(pos, i).applyMatrix4(obj.matrixWorld);
        pts.push(v.x, v.y, v.z);
      }
      const index = g.index;
      const n = index ? index.count : pos.count;
      for (let i = 0; i < n; i++) faces.push(base + (index ? index.getX(i) : i));
      vertices += pos.count; triangles += n / 3;
    });
    const box = new THREE.Box3().setFromObject(root);
    const sphere = box.getBoundingSphere(new THREE.Sphere());
    const entry = {
      root, meshes, originals, hasColour, sphere,
      points: new Float32Array(pts), faces: Uint32Array.from(faces),
      stats: { vertices, triangles },
    };
    this.items.set(id, entry);
    this._applyMode(entry);
    return entry.stats;
  }

  has(id) { return this.items.has(id); }
  geometry(id) { const e = this.items.get(id); return e ? { points: e.points, faces: e.faces } : null; }

  /** Show these candidate ids in the comparison views, left to right. */
  show(ids, { reframe = false } = {}) {
    const before = this.shown.join(',');
    this.shown = ids.slice();
    for (const [id, e] of this.items) e.root.visible = false;
    if (reframe || !this._framed) this._frame();
    if (before !== this.shown.join(',')) this.announced = '';
    this.requestRender();
  }

  _frame() {
    const spheres = this.shown.map((id) => this.items.get(id)?.sphere).filter(Boolean);
    if (!spheres.length) return;
    const r = Math.max(...spheres.map((s) => s.center.length() + s.radius), 1e-3);
    const dist = r / Math.sin(THREE.MathUtils.degToRad(this.camera.fov / 2)) * 1.05;
    this.camera.position.set(0.55, 0.45, 1).normalize().multiplyScalar(dist);
    this.camera.near = dist / 100; this.camera.far = dist * 10;
    this.camera.updateProjectionMatrix();
    this.controls.target.set(0, 0, 0);
    this.controls.update();
    this._framed = true;
  }

  setMode(mode) {
    if (!MODES.includes(mode)) throw new Error(`unknown mode ${mode}`);
    this.mode = mode;
    for (const e of this.items.values()) this._applyMode(e);
    this.requestRender();
    return mode;
  }

  cycleMode() { return this.setMode(MODES[(MODES.indexOf(this.mode) + 1) % MODES.length]); }

  _applyMode(entry) {
    entry.meshes.forEach((m, i) => {
      const original = entry.originals[i];
      if (this.mode === 'colour') {
        // Textured candidates keep their own material; vertex-coloured ones share one.
        m.material = original.map ? original : (entry.hasColour ? this.materials.colour : this.materials.shaded);
      } else {
        m.material = this.materials[this.mode];
      }
    });
  }

  setTurntable(on) {
    this.controls.autoRotate = Boolean(on);
    this.requestRender();
    return this.controls.autoRotate;
  }

  get turntable() { return this.controls.autoRotate; }

  /** Forget the item: dispose every geometry, texture and per-item material. */
  clear() {
    this.exitLayout();
    for (const e of this.items.values()) {
      e.root.removeFromParent();
      for (const m of e.meshes) m.geometry.dispose();
      for (const mat of e.originals) {
        for (const value of Object.values(mat)) if (value?.isTexture) value.dispose();
        mat.dispose();
      }
    }
    this.items.clear();
    this.loading.clear();
    this.generation += 1;
    this.shown = [];
    this._framed = false;
    this.announced = '';
    this.requestRender();
  }

  // ---- layout stage ----
  /**
   * Show candidate `id` over the photo at `layout`, seen through the photo's camera K.
   * background: a canvas holding the photo; cloud: optional camera-frame points (Float32Array).
   */
  enterLayout({ id, K, width, height, layout, background, cloud = null, el }) {
    this.exitLayout();
    const entry = this.items.get(id);
    if (!entry) throw new Error(`candidate ${id} is not loaded`);
    const scene = new THREE.Scene();
    scene.add(new THREE.HemisphereLight(0xf2f4ff, 0x40382e, 1.6));
    const camera = new THREE.PerspectiveCamera();
    camera.projectionMatrix.fromArray(projectionFromK(K, width, height, 0.01, 100));
    camera.projectionMatrixInverse.copy(camera.projectionMatrix).invert();
    const light = new THREE.DirectionalLight(0xffffff, 2.0);
    light.position.set(0.5, 1, 1);
    camera.add(light);
    scene.add(camera);
    const texture = new THREE.CanvasTexture(background);
    texture.colorSpace = THREE.SRGBColorSpace;
    scene.background = texture;
    // Same geometry and materials as the comparison view: no second copy on the GPU.
    const object = new THREE.Group();
    for (const m of entry.meshes) {
      const clone = new THREE.Mesh(m.geometry, m.material);
      clone.matrixAutoUpdate = false;
      clone.matrix.copy(m.matrixWorld);
      object.add(clone);
    }
    this._setLayout(object, layout);
    scene.add(object);
    let points = null;
    if (cloud?.length) {
      const g = new THREE.BufferGeometry();
      g.setAttribute('position', new THREE.BufferAttribute(cloud, 3));
      points = new THREE.Points(g, new THREE.PointsMaterial({ color: 0x5ee6ff, size: 2, sizeAttenuation: false, transparent: true, opacity: 0.6 }));
      scene.add(points);
    }
    const transform = new TransformControls(camera, el);
    transform.attach(object);
    transform.setSize(0.8);
    scene.add(transform.getHelper());
    transform.addEventListener('change', () => this.requestRender());
    transform.addEventListener('objectChange', () => this._emitLayout(false));
    transform.addEventListener('mouseUp', () => this._emitLayout(true));
    transform.addEventListener('mouseDown', () => this.stage.dispatchEvent(new CustomEvent('viewer:layout-start')));
    this.layout = { scene, camera, object, transform, el, width, height, texture, points };
    this.stage.classList.add('layout-mode');
    this.requestRender();
  }

  exitLayout() {
    const l = this.layout;
    if (!l) return;
    l.transform.detach();
    l.transform.dispose();
    l.texture.dispose();
    if (l.points) { l.points.geometry.dispose(); l.points.material.dispose(); }
    this.layout = null;
    this.stage.classList.remove('layout-mode');
    this.requestRender();
  }

  setLayoutMode(mode) { this.layout?.transform.setMode(mode); }

  setLayout(layout) {
    if (!this.layout) return;
    this._setLayout(this.layout.object, layout);
    this.requestRender();
  }

  _setLayout(object, { rotation: [w, x, y, z], translation, scale }) {
    object.quaternion.set(x, y, z, w).normalize();
    object.position.fromArray(translation);
    const s = typeof scale === 'number' ? [scale, scale, scale] : scale;
    object.scale.fromArray(s);
    object.updateMatrixWorld(true);
  }

  currentLayout() {
    const o = this.layout?.object;
    if (!o) return null;
    const q = o.quaternion;
    return { rotation: [q.w, q.x, q.y, q.z], translation: o.position.toArray(), scale: o.scale.toArray() };
  }

  _emitLayout(final) {
    this.stage.dispatchEvent(new CustomEvent('viewer:layout-change', { detail: { layout: this.currentLayout(), final } }));
  }

  // ---- drawing ----
  requestRender() {
    if (this.pending || this.destroyed) return;
    this.pending = true;
    requestAnimationFrame(this._loop);
  }

  _loop() {
    this.pending = false;
    if (this.destroyed) return;
    if (this.controls.autoRotate) this.controls.update();
    this.render();
    if (this.controls.autoRotate) this.requestRender();
  }

  render() {
    const r = this.renderer;
    const rect = this.canvas.parentElement.getBoundingClientRect();
    const w = Math.max(1, Math.floor(rect.width)); const h = Math.max(1, Math.floor(rect.height));
    const size = r.getSize(new THREE.Vector2());
    if (size.x !== w || size.y !== h) r.setSize(w, h, true);
    r.setScissor(0, 0, w, h); r.setViewport(0, 0, w, h);
    r.setClearColor(BG, 1); r.clear();
    if (this.layout) { this._renderLayout(rect, h); return; }
    let drawn = 0;
    this.views.forEach((view, i) => {
      const id = this.shown[i];
      const e = this.items.get(id);
      const vr = view.el.getBoundingClientRect();
      const x = vr.left - rect.left; const y = h - (vr.bottom - rect.top);
      if (vr.width < 2 || vr.height < 2) return;
      r.setViewport(x, y, vr.width, vr.height); r.setScissor(x, y, vr.width, vr.height);
      r.setClearColor(BG, 1); r.clear();
      if (!e) return;
      this.camera.aspect = vr.width / vr.height; this.camera.updateProjectionMatrix();
      for (const other of this.items.values()) other.root.visible = false;
      if (e.root.parent !== this.scene) this.scene.add(e.root);
      e.root.visible = true;
      r.render(this.scene, this.camera);
      e.root.visible = false;
      drawn += 1;
    });
    const key = this.shown.join(',');
    if (drawn === this.shown.length && drawn > 0 && this.announced !== key) {
      this.announced = key;
      this.stage.dataset.rendered = key;
      this.stage.dispatchEvent(new CustomEvent('viewer:rendered', { detail: { ids: this.shown.slice() } }));
    }
  }

  _renderLayout(rect, h) {
    const l = this.layout; const r = this.renderer;
    const er = l.el.getBoundingClientRect();
    // Fit the photo's aspect inside the element: the viewport is the photo.
    const s = Math.min(er.width / l.width, er.height / l.height);
    const vw = l.width * s; const vh = l.height * s;
    const x = er.left - rect.left + (er.width - vw) / 2;
    const y = h - (er.top - rect.top + (er.height + vh) / 2);
    r.setViewport(x, y, vw, vh); r.setScissor(x, y, vw, vh);
    r.render(l.scene, l.camera);
    this.stage.dataset.layoutRendered = '1';
  }

  /** renderer.info.memory and the number of WebGL contexts in use (always one). */
  info() {
    return { ...this.renderer.info.memory, programs: this.renderer.info.programs?.length ?? 0, contexts: 1 };
  }

  destroy() {
    this.clear();
    this.destroyed = true;
    this.resizeObserver.disconnect();
    this.controls.dispose();
    for (const m of Object.values(this.materials)) m.dispose();
    this.renderer.dispose();
    this.renderer.forceContextLoss();
    this.canvas.remove();
  }
}
