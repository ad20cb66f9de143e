// The projects pages (engine/console/projects.py): a new project, its settings, its members and
// roles, the user's API tokens. Every write goes through the JSON API; its 400 details are shown
// under the fields they name (common.showErrors).
import { api, ApiError, clearErrors, flash, installNavKeys, showErrors } from './common.js';

installNavKeys();

const NUMBER_OR_NULL = new Set(['daily_cap']);

/** A settings form's values as the API takes them: numbers as numbers, checkboxes as booleans. */
function formValues(form) {
  const body = {};
  for (const el of form.elements) {
    if (!el.name || el.disabled) continue;
    if (el.type === 'checkbox') body[el.name] = el.checked;
    else if (el.type === 'number') {
      const text = el.value.trim();
      if (text === '') { if (NUMBER_OR_NULL.has(el.name)) body[el.name] = null; else body[el.name] = ''; }
      else body[el.name] = Number(text);
    } else body[el.name] = el.value;
  }
  return body;
}

async function busy(button, work) {
  if (button) button.disabled = true;
  try { return await work(); } finally { if (button) button.disabled = false; }
}

const createForm = document.getElementById('project-create');
if (createForm) {
  createForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(createForm.querySelector('button[type=submit]'), async () => {
      const body = formValues(createForm);
      if (!body.slug) delete body.slug;
      try {
        clearErrors(createForm);
        const project = await api.request('POST', 'projects/', body);
        window.location.assign(`/console/projects/${encodeURIComponent(project.slug)}/?created=1`);
      } catch (err) { showErrors(createForm, err); }
    });
  });
}

const settingsForm = document.getElementById('project-settings');
if (settingsForm && settingsForm.querySelector('button[type=submit]')) {
  const slug = settingsForm.dataset.slug;
  if (new URLSearchParams(window.location.search).has('created')) {
    flash('Project created. You are its lead: add members below, then import photos (i).');
  }
  settingsForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(settingsForm.querySelector('button[type=submit]'), async () => {
      try {
        clearErrors(settingsForm);
        await api.request('PATCH', `projects/${encodeURIComponent(slug)}/`, formValues(settingsForm));
        flash('Settings saved.');
      } catch (err) { showErrors(settingsForm, err); flash(err.message, { error: true }); }
    });
  });
}

// ---------------------------------------------------------------- members
const memberTable = document.getElementById('member-table');
if (memberTable) {
  const slug = memberTable.dataset.slug;
  const membersUrl = `projects/${encodeURIComponent(slug)}/members/`;
  const roleUrl = (username, role) => `${membersUrl}${encodeURIComponent(username)}/${encodeURIComponent(role)}/`;

  memberTable.addEventListener('change', async (ev) => {
    const box = ev.target.closest('input.role-toggle');
    if (!box) return;
    const username = box.closest('tr').dataset.username;
    const role = box.dataset.role;
    box.disabled = true;
    try {
      if (box.checked) await api.request('POST', membersUrl, { username, role });
      else await api.request('DELETE', roleUrl(username, role));
      flash(box.checked ? `${username} is now also ${role}.` : `${username} is no longer ${role}.`);
    } catch (err) {
      box.checked = !box.checked; // the server refused: show what is true
      flash(err.message, { error: true });
    } finally { box.disabled = false; }
  });

  memberTable.addEventListener('click', async (ev) => {
    const button = ev.target.closest('button.member-remove');
    if (!button) return;
    const row = button.closest('tr');
    const username = row.dataset.username;
    if (!window.confirm(`Remove ${username} from the project (every role)?`)) return;
    // Other roles first, lead last: when the last-lead rule refuses, the member keeps the lead role.
    const roles = [...row.querySelectorAll('input.role-toggle:checked')].map((b) => b.dataset.role)
      .sort((a, b) => (a === 'lead') - (b === 'lead'));
    try {
      for (const role of roles) {
        await api.request('DELETE', roleUrl(username, role));
        row.querySelector(`input[data-role="${role}"]`).checked = false;
      }
      row.remove();
      flash(`${username} removed.`);
    } catch (err) { flash(err.message, { error: true }); }
  });

  const addForm = document.getElementById('member-add');
  addForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(addForm.querySelector('button[type=submit]'), async () => {
      const body = formValues(addForm);
      try {
        clearErrors(addForm);
        await api.request('POST', membersUrl, body);
        window.location.reload();
      } catch (err) { showErrors(addForm, err); }
    });
  });
}

// ---------------------------------------------------------------- tokens
const tokenForm = document.getElementById('token-create');
if (tokenForm) {
  const table = document.getElementById('token-table');
  tokenForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(tokenForm.querySelector('button[type=submit]'), async () => {
      try {
        clearErrors(tokenForm);
        const token = await api.request('POST', 'auth/tokens/', { name: tokenForm.elements.name.value });
        document.getElementById('token-key').textContent = token.key;
        document.getElementById('token-created').hidden = false;
        table.querySelector('td.empty')?.closest('tr').remove();
        const row = table.insertRow(1);
        row.dataset.tokenId = token.id;
        for (const text of [token.name, `${token.prefix}…`, token.created_at.slice(0, 16).replace('T', ' '), 'never']) {
          row.insertCell().textContent = text;
        }
        row.insertCell().innerHTML = '<span class="state done">active</span>';
        const revoke = document.createElement('button');
        Object.assign(revoke, { type: 'button', className: 'danger token-revoke', textContent: 'Revoke' });
        revoke.setAttribute('aria-label', `Revoke token ${token.name}`);
        row.insertCell().append(revoke);
        tokenForm.reset();
      } catch (err) { showErrors(tokenForm, err); }
    });
  });
  document.getElementById('token-copy').addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(document.getElementById('token-key').textContent);
      flash('Copied.');
    } catch { flash('Select the key and copy it by hand.', { error: true }); }
  });
  table.addEventListener('click', async (ev) => {
    const button = ev.target.closest('button.token-revoke');
    if (!button) return;
    const row = button.closest('tr');
    try {
      await api.request('DELETE', `auth/tokens/${row.dataset.tokenId}/`);
      row.cells[4].innerHTML = '<span class="state failed">revoked</span>';
      button.remove();
      flash('Token revoked: requests with it now get 401.');
    } catch (err) { flash(err.message, { error: true }); }
  });
}

export { ApiError };
