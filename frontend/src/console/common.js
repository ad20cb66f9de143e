// What the console's page modules share: the navigation's keys, the flash line, the API's errors
// shown next to the form fields they name.
import { Api, ApiError } from '../api.js';

export const api = new Api({ base: '/api/v1/' });
export { ApiError };

function typing(target) {
  return target instanceof HTMLElement && (target.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName));
}

/** Keys of the navigation: each link with data-key is followed when its key is pressed outside a field. */
export function installNavKeys(root = document) {
  if (window.__consoleNavKeys) return;
  window.__consoleNavKeys = true;
  root.addEventListener('keydown', (ev) => {
    if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey || typing(ev.target)) return;
    const link = document.querySelector(`.console-nav a[data-key="${CSS.escape(ev.key)}"]`);
    if (link) { ev.preventDefault(); window.location.assign(link.href); }
  });
}

export function flash(message, { error = false } = {}) {
  const el = document.getElementById('console-flash');
  if (!el) return;
  el.textContent = message;
  el.classList.toggle('error', error);
}

/** Clear a form's error marks. */
export function clearErrors(form) {
  form.querySelectorAll('[aria-invalid]').forEach((el) => el.removeAttribute('aria-invalid'));
  form.querySelectorAll('.field-error').forEach((el) => { el.textContent = ''; });
  const general = form.querySelector('.form-error');
  if (general) general.textContent = '';
}

/**
 * Show an ApiError on a form: each message of `details` (the API's field -> [messages]) under the
 * field of that name, the rest in the form's .form-error line. Returns the first invalid field.
 */
export function showErrors(form, err) {
  clearErrors(form);
  const details = err instanceof ApiError && err.details && typeof err.details === 'object' ? err.details : {};
  let first = null;
  const leftover = [];
  for (const [name, messages] of Object.entries(details)) {
    const text = Array.isArray(messages) ? messages.join(' ') : String(messages);
    const input = form.elements.namedItem(name);
    const slot = form.querySelector(`.field-error[data-for="${CSS.escape(name)}"]`);
    if (input && slot) {
      input.setAttribute('aria-invalid', 'true');
      slot.textContent = text;
      first = first || input;
    } else {
      leftover.push(`${name}: ${text}`);
    }
  }
  const general = form.querySelector('.form-error');
  if (general) general.textContent = first && !leftover.length ? 'Please fix the fields marked in red.' : [err.message, ...leftover].join(' ');
  if (first) first.focus();
  return first;
}
