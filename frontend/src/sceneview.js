// Scene composition: every judged winner of one photo at its layout in the camera frame, in one
// scene (SAM 3D's "composable 3D scene"); exported as one GLB with GLTFExporter.
// Facade like the viewer: setup(el) -> {add(id, glbBuffer, layout), exportGlb(), destroy()}.
import * as THREE from 'three';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';
import { GLTFExporter } from 'three/addons/exporters/GLTFExporter.js';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';

export function setup(el) {
  const canvas = document.createElement('canvas');
  canvas.className = 'viewer-canvas';
  el.prepend(canvas);
  const renderer = new THREE.WebGLRenderer({ canvas, antialias: true });
  renderer.outputColorSpace = THREE.SRGBColorSpace;
  renderer.setPixelRatio(Math.min(2, window.devicePixelRatio || 1));
  const scene = new THREE.Scene();
  scene.background = new THREE.Color(0x20242c);
  const lights = new THREE.Group();
  lights.add(new THREE.HemisphereLight(0xf2f4ff, 0x40382e, 1.6));
  const sun = new THREE.DirectionalLight(0xffffff, 2); sun.position.set(1, 3, 2); lights.add(sun);
  scene.add(lights);
  const objects = new THREE.Group(); objects.name = 'scene';
  scene.add(objects);
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
  }

  async function add(id, buffer, { rotation: [w, x, y, z], translation, scale }) {
    const gltf = await loader.parseAsync(buffer, '');
    const node = new THREE.Group();
    node.name = `object-${id}`;
    node.add(gltf.scene);
    node.quaternion.set(x, y, z, w).normalize();
    node.position.fromArray(translation);
    node.scale.fromArray(typeof scale === 'number' ? [scale, scale, scale] : scale);
    objects.add(node);
    return node;
  }

  function frame() {
    const box = new THREE.Box3().setFromObject(objects);
    if (box.isEmpty()) { render(); return; }
    const center = box.getCenter(new THREE.Vector3());
    camera.position.set(0, 0, 0); // the photo's viewpoint
    controls.target.copy(center);
    controls.update();
    render();
    el.dataset.rendered = String(objects.children.length);
  }

  /** The composed scene as one GLB (ArrayBuffer), camera frame = glTF frame (+Y up, metres). */
  function exportGlb() {
    return new GLTFExporter().parseAsync(objects, { binary: true });
  }

  function destroy() {
    ro.disconnect(); controls.dispose();
    objects.traverse((o) => { if (o.isMesh) { o.geometry.dispose(); o.material.dispose(); } });
    renderer.dispose(); canvas.remove();
  }

  return { add, frame, render, exportGlb, destroy, renderer };
}
