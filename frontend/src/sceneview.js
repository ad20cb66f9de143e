// Scene composition: every judged winner of one photo at its layout in the camera frame, in one
// scene (SAM 3D's "composable 3D scene"): meshes under image-based lighting, splats drawn by Spark
// (one SparkRenderer in the scene, same renderer); exported as one GLB with GLTFExporter.
// Facade like the viewer: setup(el) -> {add(id, glbBuffer, layout), addSplat(id, bytes, layout),
// frame(), exportGlb(), destroy()}.
import * as THREE from 'three';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';
import { GLTFExporter } from 'three/addons/exporters/GLTFExporter.js';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { studioEnvironment } from './environment.js';
import { LIGHTING, loadSpark } from './viewer.js';

export function setup(el) {
  const canvas = document.createElement('canvas');
  canvas.className = 'viewer-canvas';
  el.prepend(canvas);
  const renderer = new THREE.WebGLRenderer({ canvas, antialias: true });
  renderer.outputColorSpace = THREE.SRGBColorSpace;
  renderer.setPixelRatio(Math.min(2, window.devicePixelRatio || 1));
  const scene = new THREE.Scene();
  scene.background = new THREE.Color(0x20242c);
  const environment = studioEnvironment();
  scene.environment = environment;
  scene.environmentIntensity = LIGHTING.environment;
  const lights = new THREE.Group();
  lights.add(new THREE.HemisphereLight(0xf2f4ff, 0x40382e, LIGHTING.hemisphere));
  const sun = new THREE.DirectionalLight(0xffffff, LIGHTING.key); sun.position.set(1, 3, 2); lights.add(sun);
  scene.add(lights);
  const objects = new THREE.Group(); objects.name = 'scene';
  scene.add(objects);
  const splats = []; // SplatMesh objects (not part of the GLB export)
  let spark = null;
  // Start at the photo's camera: the origin looking down -Z, as the layouts are defined.
  const camera = new THREE.PerspectiveCamera(50, 1, 0.01, 200);
  const controls = new OrbitControls(camera, canvas);
  controls.addEventListener('change', render);
  const loader = new GLTFLoader();
  const ro = new ResizeObserver(render); ro.observe(el);

  function render() {
    const w = el.clientWidth || 1; const h = el.clientHeight || 1;
    renderer.setSize(w, h, false);
    camera.aspect = w / h; camera.updateProjectionMatrix();
    renderer.render(scene, camera);
    // Spark sorts in a worker: until every splat is drawn, keep drawing.
    if (spark && (!spark.activeSplats || splats.some((s) => !spark.display.mapping.some((m) => m.node === s)))) {
      requestAnimationFrame(render);
    } else if (el.dataset.framed) {
      el.dataset.rendered = String(objects.children.length);
    }
  }

  function place(node, id, { rotation: [w, x, y, z], translation, scale }) {
    node.name = `object-${id}`;
    node.quaternion.set(x, y, z, w).normalize();
    node.position.fromArray(translation);
    node.scale.fromArray(typeof scale === 'number' ? [scale, scale, scale] : scale);
    objects.add(node);
    return node;
  }

  async function add(id, buffer, layout) {
    const gltf = await loader.parseAsync(buffer, '');
    const node = new THREE.Group();
    node.add(gltf.scene);
    return place(node, id, layout);
  }

  /** A splat (SPZ or 3DGS PLY bytes) at its layout. */
  async function addSplat(id, bytes, layout) {
    const { SparkRenderer, SplatMesh } = await loadSpark();
    if (!spark) {
      spark = new SparkRenderer({ renderer, onDirty: render });
      scene.add(spark);
    }
    const mesh = new SplatMesh({ fileBytes: bytes });
    await mesh.initialized;
    splats.push(mesh);
    const node = new THREE.Group();
    node.userData.splat = true;
    node.add(mesh);
    return place(node, id, layout);
  }

  function frame() {
    const box = new THREE.Box3();
    for (const node of objects.children) {
      const s = node.children[0];
      if (node.userData.splat) box.union(s.getBoundingBox().applyMatrix4(node.matrixWorld));
      else box.expandByObject(node);
    }
    objects.updateMatrixWorld(true);
    if (box.isEmpty()) { render(); return; }
    const center = box.getCenter(new THREE.Vector3());
    camera.position.set(0, 0, 0); // the photo's viewpoint
    controls.target.copy(center);
    controls.update();
    el.dataset.framed = '1';
    render();
  }

  /** The composed meshes as one GLB (ArrayBuffer), camera frame = glTF frame (+Y up, metres). */
  async function exportGlb() {
    const meshes = new THREE.Group();
    for (const node of objects.children) if (!node.userData.splat) meshes.add(node.clone());
    return new GLTFExporter().parseAsync(meshes, { binary: true });
  }

  function destroy() {
    ro.disconnect(); controls.dispose();
    objects.traverse((o) => { if (o.isMesh) { o.geometry.dispose(); o.material.dispose(); } });
    for (const s of splats) s.dispose();
    spark?.dispose();
    environment.dispose();
    renderer.dispose(); canvas.remove();
  }

  return { add, addSplat, frame, render, exportGlb, destroy, renderer };
}
