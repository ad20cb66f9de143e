// The candidate viewer: ONE WebGLRenderer drawing several viewports with the scissor test
// (three.js manual, "multiple scenes"; CVAT canvas3d), a camera shared by the two comparison
// views so that turning one turns both, and a layout view over the photo.
//
// Meshes are lit by image-based lighting (environment.js: a studio prefiltered on the CPU, made once
// per viewer) as well as two lights; Gaussian splats are drawn by Spark (@sparkjsdev/spark, loaded
// on the first splat) with the same renderer, in the same scissored viewports and with the same
// camera: one SparkRenderer per view (each sorts for its own splat), in a scene of its own.
//
// Facade: setup(stageEl) -> viewer; viewer.load(id, glbArrayBuffer); viewer.loadSplat(id, spzOrPlyBytes);
// viewer.show([leftId, rightId], {as: ['mesh', 'splat']}); viewer.setMode('textured' | 'geometry' |
// 'wireframe' | 'normals' | 'splat'); viewer.clear() when the item changes (disposes every geometry,
// material, texture and splat buffer of the item); viewer.destroy(). The viewer never calls the
// server: bytes come in, DOM events go out:
//   'viewer:rendered'      {ids}            first frame with every shown candidate drawn
//   'viewer:layout-change' {layout, final}  the layout stage's object moved (final on mouse-up)
//   'viewer:error'         {message}
import * as THREE from 'three';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';
import { TransformControls } from 'three/addons/controls/TransformControls.js';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { studioEnvironment } from './environment.js';
import { projectionFromK } from './projection.js';
import { MODES } from './representation.js';

export { MODES };
const BG = new THREE.Color(0x20242c);
// Lighting of meshes, one recipe for the views, the layout stage and the scene view: the room's
// image-based light carries PBR materials, a sky/ground fill and a key light from the camera keep
// shapes readable (the key follows the camera: the lit side is always the visible side).
export const LIGHTING = Object.freeze({ environment: 0.45, hemisphere: 0.5, key: 1.2 });
const OVERLAY_POINTS = 20000; // splat centres kept for the photo overlay and the mask overlap

let spark = null;
/** Spark's module (2.5 MB, compiles its WebAssembly on load): imported once, on the first splat. */
export function loadSpark() {
  spark ??= import('@sparkjsdev/spark');
  return spark;
}

/** True when a glTF material carries any texture (base colour, normal, metallic-roughness...). */
function hasTexture(material) {
  return Object.values(material).some((v) => v?.isTexture);
}

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
    // Image-based lighting for PBR materials, kept for the viewer's life and shared by the layout stage.
    this.environment = studioEnvironment();
    this.scene.environment = this.environment;
    this.scene.environmentIntensity = LIGHTING.environment;
    this.scene.add(new THREE.HemisphereLight(0xf2f4ff, 0x40382e, LIGHTING.hemisphere));
    this.camera = new THREE.PerspectiveCamera(35, 1, 0.01, 100);
    const key = new THREE.DirectionalLight(0xffffff, LIGHTING.key);
    key.position.set(1.5, 2, 3); // follows the camera: the lit side is always the visible side
    this.camera.add(key);
    this.scene.add(this.camera);

    this.materials = {
      geometry: new THREE.MeshStandardMaterial({ color: 0xaab0ba, roughness: 0.7, metalness: 0 }),
      colour: new THREE.MeshStandardMaterial({ vertexColors: true, roughness: 0.8, metalness: 0 }),
      wireframe: new THREE.MeshBasicMaterial({ color: 0x9fe0ff, wireframe: true }),
      normals: new THREE.MeshNormalMaterial(),
    };
    this.mode = 'textured';
    this.loader = new GLTFLoader(); // KHR_mesh_quantization and EXT_texture_webp are built in
    this.items = new Map(); // id -> {mesh: {root, meshes, originals, ...} | null, splat: {object, ...} | null}
    this.splatLoading = new Map(); // id -> splat decode in flight
    this.drawAs = []; // per shown view: 'mesh' | 'splat'
    this.loading = new Map(); // id -> parse in flight
    this.generation = 0; // bumped by clear(): parses of a previous item are dropped
    this.shown = [];
    this.views = [...stage.querySelectorAll('[data-view]')].map((el) => ({ el, side: el.dataset.view }));
    // One splat scene and SparkRenderer per view (made on the first splat): a SparkRenderer draws
    // every visible splat of its scene, sorted for its last camera, so views cannot share one.
    this.slots = this.views.map(() => ({ scene: new THREE.Scene(), spark: null, object: null }));

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
    const meshes = ['colour', 'geometry'].map((m) => new THREE.Mesh(g, this.materials[m]));
    meshes.forEach((m) => this.scene.add(m));
    try { this.renderer.compile(this.scene, this.camera); } catch { /* a warm-up only */ }
    meshes.forEach((m) => m.removeFromParent());
    g.dispose();
  }

  // ---- candidates ----
  /** Parse one candidate's GLB (full or compact) and keep it until clear(). Returns its stats. */
  load(id, buffer) {
    const e = this.items.get(id);
    if (e?.mesh) return Promise.resolve(e.mesh.stats);
    if (!this.loading.has(id)) {
      const generation = this.generation;
      const p = this._parse(id, buffer, generation).finally(() => { if (this.loading.get(id) === p) this.loading.delete(id); });
      this.loading.set(id, p);
    }
    return this.loading.get(id);
  }

  _entry(id) {
    if (!this.items.has(id)) this.items.set(id, { mesh: null, splat: null });
    return this.items.get(id);
  }

  async _parse(id, buffer, generation) {
    const gltf = await this.loader.parseAsync(buffer, '');
    if (this.destroyed || generation !== this.generation) { // the item changed meanwhile
      gltf.scene.traverse((o) => { if (o.isMesh) disposeMesh(o.geometry, [o.material]); });
      return null;
    }
    const root = new THREE.Group();
    root.add(gltf.scene);
    root.updateMatrixWorld(true);
    const meshes = []; const originals = [];
    const pts = []; const faces = [];
    let vertices = 0; let triangles = 0; let hasColour = false; let textured = false;
    const v = new THREE.Vector3();
    gltf.scene.traverse((obj) => {
      if (!obj.isMesh) return;
      meshes.push(obj);
      originals.push(obj.material);
      textured ||= hasTexture(obj.material);
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
    const mesh = {
      root, meshes, originals, hasColour, textured, box, sphere: box.getBoundingSphere(new THREE.Sphere()),
      points: new Float32Array(pts), faces: Uint32Array.from(faces),
      stats: { vertices, triangles, textured },
    };
    this._entry(id).mesh = mesh;
    this._applyMode(mesh);
    return mesh.stats;
  }

  /**
   * Decode one candidate's splat (SPZ or 3DGS PLY bytes) with Spark and keep it until clear().
   * Returns its stats: {gaussians}.
   */
  loadSplat(id, bytes) {
    const e = this.items.get(id);
    if (e?.splat) return Promise.resolve(e.splat.stats);
    if (!this.splatLoading.has(id)) {
      const generation = this.generation;
      const p = this._parseSplat(id, bytes, generation)
        .finally(() => { if (this.splatLoading.get(id) === p) this.splatLoading.delete(id); });
      this.splatLoading.set(id, p);
    }
    return this.splatLoading.get(id);
  }

  async _parseSplat(id, bytes, generation) {
    const mod = await loadSpark();
    this.sparkModule = mod;
    const { SplatMesh } = mod;
    if (this.destroyed || generation !== this.generation) return null;
    const object = new SplatMesh({ fileBytes: bytes });
    await object.initialized;
    if (this.destroyed || generation !== this.generation) { object.dispose(); return null; }
    // The centres, sizes and colours of (at most OVERLAY_POINTS of) the Gaussians, for the overlay
    // on the photo and the mask overlap; every Gaussian for the bounds.
    const count = object.numSplats;
    const stride = Math.max(1, Math.ceil(count / OVERLAY_POINTS));
    const kept = Math.ceil(count / stride);
    const points = new Float32Array(kept * 3); const sigmas = new Float32Array(kept); const colors = new Uint8Array(kept * 3);
    const box = new THREE.Box3();
    object.forEachSplat((i, center, scales, _q, opacity, color) => {
      box.expandByPoint(center);
      if (i % stride) return;
      const k = i / stride;
      if (k >= kept) return;
      points[3 * k] = center.x; points[3 * k + 1] = center.y; points[3 * k + 2] = center.z;
      sigmas[k] = opacity > 0.1 ? Math.max(scales.x, scales.y, scales.z) : 0;
      colors[3 * k] = 255 * color.r; colors[3 * k + 1] = 255 * color.g; colors[3 * k + 2] = 255 * color.b;
    });
    const splat = {
      object, box, sphere: box.getBoundingSphere(new THREE.Sphere()), points, sigmas, colors,
      stats: { gaussians: count },
    };
    this._entry(id).splat = splat;
    this.requestRender();
    return splat.stats;
  }

  has(id, as = 'mesh') { return Boolean(this.items.get(id)?.[as]); }

  /** What the overlay and the mask overlap need: {points, faces} of a mesh, {points, sigmas, colors} of a splat. */
  geometry(id, as = 'mesh') {
    const part = this.items.get(id)?.[as];
    if (!part) return null;
    return as === 'splat' ? { points: part.points, sigmas: part.sigmas, colors: part.colors } : { points: part.points, faces: part.faces };
  }

  /** Bounds (THREE.Box3, object frame) of a candidate's drawn representation. */
  bounds(id, as = 'mesh') { return this.items.get(id)?.[as]?.box.clone() ?? null; }

  /**
   * Show these candidate ids in the comparison views, left to right; `as` says per view whether the
   * mesh or the splat is drawn (the workbench decides it from the view mode, representation.js).
   */
  show(ids, { reframe = false, as = null } = {}) {
    const before = this._shownKey();
    this.shown = ids.slice();
    this.drawAs = ids.map((_, i) => as?.[i] ?? 'mesh');
    if (reframe || !this._framed) this._frame();
    if (before !== this._shownKey()) this.announced = '';
    this.requestRender();
  }

  _shownKey() { return this.shown.map((id, i) => `${id}${this.drawAs[i] === 'splat' ? 's' : ''}`).join(','); }

  _part(i) { return this.items.get(this.shown[i])?.[this.drawAs[i]] ?? null; }

  _frame() {
    const spheres = this.shown.map((_, i) => this._part(i)?.sphere).filter(Boolean);
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
    for (const e of this.items.values()) if (e.mesh) this._applyMode(e.mesh);
    this.announced = '';
    this.requestRender();
    return mode;
  }

  _applyMode(mesh) {
    mesh.meshes.forEach((m, i) => {
      const original = mesh.originals[i];
      if (this.mode === 'textured' || this.mode === 'splat') {
        // The mesh as made: its own (PBR, textured) material; vertex-coloured ones share one, and
        // glTF's default material (white, fully metallic) reads as shaded geometry.
        if (hasTexture(original)) m.material = original;
        else if (mesh.hasColour) m.material = this.materials.colour;
        else m.material = original.metalness >= 1 && !original.name ? this.materials.geometry : original;
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

  /** Forget the item: dispose every geometry, texture, per-item material and splat buffer. */
  clear() {
    this.exitLayout();
    for (const slot of this.slots) {
      slot.object?.removeFromParent();
      slot.object = null;
      slot.spark?.clearSplats();
    }
    for (const e of this.items.values()) {
      if (e.mesh) {
        e.mesh.root.removeFromParent();
        e.mesh.meshes.forEach((m) => m.geometry.dispose());
        disposeMesh(null, e.mesh.originals);
      }
      if (e.splat) {
        e.splat.object.removeFromParent();
        e.splat.object.dispose();
      }
    }
    this.items.clear();
    this.loading.clear();
    this.splatLoading.clear();
    this.generation += 1;
    this.shown = [];
    this.drawAs = [];
    this._framed = false;
    this.announced = '';
    this.requestRender();
  }

  /** The view's SparkRenderer, made on first use (Spark must have been loaded: loadSpark()). */
  _spark(slot) {
    if (!slot.spark) {
      if (!this.sparkModule) return null;
      slot.spark = new this.sparkModule.SparkRenderer({ renderer: this.renderer, onDirty: () => this.requestRender() });
      slot.scene.add(slot.spark);
    }
    return slot.spark;
  }

  // ---- layout stage ----
  /**
   * Show candidate `id` (its mesh, or its splat with as='splat') over the photo at `layout`, seen
   * through the photo's camera K. background: a canvas holding the photo; cloud: optional
   * camera-frame points (Float32Array).
   */
  enterLayout({ id, as = 'mesh', K, width, height, layout, background, cloud = null, el }) {
    this.exitLayout();
    const part = this.items.get(id)?.[as];
    if (!part) throw new Error(`candidate ${id} has no ${as} loaded`);
    const scene = new THREE.Scene();
    scene.environment = this.environment;
    scene.environmentIntensity = LIGHTING.environment;
    scene.add(new THREE.HemisphereLight(0xf2f4ff, 0x40382e, LIGHTING.hemisphere));
    const camera = new THREE.PerspectiveCamera();
    camera.projectionMatrix.fromArray(projectionFromK(K, width, height, 0.01, 100));
    camera.projectionMatrixInverse.copy(camera.projectionMatrix).invert();
    const light = new THREE.DirectionalLight(0xffffff, LIGHTING.key);
    light.position.set(0.5, 1, 1);
    camera.add(light);
    scene.add(camera);
    const texture = new THREE.CanvasTexture(background);
    texture.colorSpace = THREE.SRGBColorSpace;
    scene.background = texture;
    // Same geometry, materials and splat buffers as the comparison views: no second copy on the GPU.
    const object = new THREE.Group();
    let helper = null; let spark = null;
    if (as === 'splat') {
      // The splat itself moves into the layout scene with the first view's SparkRenderer; its bounds
      // are drawn as a box, the handle the gizmo moves.
      spark = this._spark(this.slots[0]);
      for (const slot of this.slots) { slot.object = null; slot.spark?.clearSplats(); }
      object.add(part.object);
      scene.add(spark);
      helper = new THREE.Box3Helper(part.box, 0x5ee6ff);
      object.add(helper);
    } else {
      for (const m of part.meshes) {
        const clone = new THREE.Mesh(m.geometry, m.material);
        clone.matrixAutoUpdate = false;
        clone.matrix.copy(m.matrixWorld);
        object.add(clone);
      }
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
    this.layout = { scene, camera, object, transform, el, width, height, texture, points, helper, spark, splat: as === 'splat' ? part.object : null };
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
    if (l.helper) { l.helper.geometry.dispose(); l.helper.material.dispose(); }
    if (l.splat) l.splat.removeFromParent(); // back to a view's scene when shown again
    if (l.spark) { l.spark.clearSplats(); this.slots[0].scene.add(l.spark); }
    this.layout = null;
    this.stage.classList.remove('layout-mode');
    this.announced = '';
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
    let drawn = 0; let waiting = false;
    this.views.forEach((view, i) => {
      const part = this._part(i);
      const vr = view.el.getBoundingClientRect();
      const x = vr.left - rect.left; const y = h - (vr.bottom - rect.top);
      if (vr.width < 2 || vr.height < 2) return;
      r.setViewport(x, y, vr.width, vr.height); r.setScissor(x, y, vr.width, vr.height);
      r.setClearColor(BG, 1); r.clear();
      if (!part) return;
      this.camera.aspect = vr.width / vr.height; this.camera.updateProjectionMatrix();
      if (this.drawAs[i] === 'splat') {
        if (this._renderSplat(this.slots[i], part)) drawn += 1; else waiting = true;
        return;
      }
      for (const other of this.items.values()) if (other.mesh) other.mesh.root.visible = false;
      if (part.root.parent !== this.scene) this.scene.add(part.root);
      part.root.visible = true;
      r.render(this.scene, this.camera);
      part.root.visible = false;
      drawn += 1;
    });
    const key = this._shownKey();
    if (drawn === this.shown.length && drawn > 0 && this.announced !== key) {
      this.announced = key;
      this.stage.dataset.rendered = this.shown.join(',');
      this.stage.dataset.renderedAs = this.drawAs.join(',');
      this.stage.dispatchEvent(new CustomEvent('viewer:rendered', { detail: { ids: this.shown.slice(), as: this.drawAs.slice() } }));
    }
    if (waiting) this.requestRender(); // Spark sorts in a worker: draw again until it is done
  }

  /**
   * Draw a splat in the current viewport with its view's SparkRenderer. True once Spark draws
   * this splat (sorted for the camera); false while its sort is still on the way.
   */
  _renderSplat(slot, part) {
    const spark = this._spark(slot);
    if (!spark) return false;
    if (slot.object !== part.object || part.object.parent !== slot.scene) {
      if (slot.object?.parent === slot.scene) slot.object.removeFromParent();
      slot.scene.add(part.object); // (taken from another view's scene if it was there)
      slot.object = part.object;
      spark.clearSplats(); // show nothing rather than the previous candidate's splat until sorted
    }
    this.renderer.render(slot.scene, this.camera);
    return spark.activeSplats > 0 && spark.display.mapping.some((m) => m.node === part.object);
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
    const ready = !l.splat || (l.spark.activeSplats > 0 && l.spark.display.mapping.some((m) => m.node === l.splat));
    if (ready) this.stage.dataset.layoutRendered = '1';
    else this.requestRender();
  }

  /**
   * renderer.info.memory, the number of WebGL contexts in use (always one) and Spark's own
   * figures: splat meshes alive and the splats its renderers' buffers hold room for.
   */
  info() {
    const sparks = this.slots.map((s) => s.spark).filter(Boolean);
    let splatMeshes = 0;
    for (const e of this.items.values()) if (e.splat) splatMeshes += 1;
    return {
      ...this.renderer.info.memory, programs: this.renderer.info.programs?.length ?? 0, contexts: 1,
      splatMeshes, sparkRenderers: sparks.length,
      sparkCapacity: sparks.reduce((n, sp) => n + (sp.maxSplats ?? 0), 0),
    };
  }

  destroy() {
    this.clear();
    this.destroyed = true;
    this.resizeObserver.disconnect();
    this.controls.dispose();
    for (const m of Object.values(this.materials)) m.dispose();
    for (const slot of this.slots) slot.spark?.dispose();
    this.environment.dispose();
    this.renderer.dispose();
    this.renderer.forceContextLoss();
    this.canvas.remove();
  }
}

/** Dispose a glTF mesh's geometry and its materials with their textures. */
function disposeMesh(geometry, materials) {
  geometry?.dispose();
  for (const mat of materials) {
    for (const value of Object.values(mat)) if (value?.isTexture) value.dispose();
    mat.dispose();
  }
}
